//! Offline audit of a log directory: being written.
