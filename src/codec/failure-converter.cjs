// The failure converter workers load when history is encrypted (TANDEM_PAYLOAD_KEY): failure messages and stack
// traces move into encoded attributes, which the payload codec encrypts. CommonJS, because Temporal requires it.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
