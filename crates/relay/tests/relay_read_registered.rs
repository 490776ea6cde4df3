//! The relay suite (`suite/relay.rs`) over `ReadRegistered` streams,
//! registered for reading only, as the broker's byte relay uses them.

const READ_REGISTERED: bool = true;

include!("suite/relay.rs");
