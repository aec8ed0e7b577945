"""Split a list into numbered pages, as a listing shows them: page 1 first."""


def page_count(total, size):
    """How many pages `total` items fill at `size` items a page."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return (total + size - 1) // size


def page(items, number, size):
    """The items on page `number` (pages are numbered from 1)."""
    if number < 1 or number > page_count(len(items), size):
        raise IndexError(f"no page {number}")
    start = number * size
    return items[start:start + size]
