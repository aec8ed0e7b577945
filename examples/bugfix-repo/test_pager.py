import unittest

from pager import page, page_count


class PageCountTest(unittest.TestCase):
    def test_counts_a_partial_page(self):
        self.assertEqual(page_count(10, 3), 4)
        self.assertEqual(page_count(9, 3), 3)
        self.assertEqual(page_count(0, 3), 0)

    def test_refuses_an_empty_page_size(self):
        with self.assertRaises(ValueError):
            page_count(10, 0)


class PageTest(unittest.TestCase):
    def test_first_page(self):
        self.assertEqual(page(list(range(10)), 1, 3), [0, 1, 2])

    def test_no_page_outside_the_range(self):
        with self.assertRaises(IndexError):
            page(list(range(10)), 0, 3)
        with self.assertRaises(IndexError):
            page(list(range(10)), 5, 3)


if __name__ == "__main__":
    unittest.main()
