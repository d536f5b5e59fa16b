//! Loading a daemon's YAML configuration: every problem collected, each naming the file and key.
