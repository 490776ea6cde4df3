//! Configuration (stub: being written).
