//! The relay suite (`suite/relay.rs`) over tokio's `UnixStream`, registered
//! with the runtime for reading and writing.

const READ_REGISTERED: bool = false;

include!("suite/relay.rs");
