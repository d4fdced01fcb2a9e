//! Checkpoints (C2SP tlog-checkpoint signed notes): being written.
