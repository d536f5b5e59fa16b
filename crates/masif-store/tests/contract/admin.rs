//! Contract tests of the `Admin` half (the UI's queries). Placeholder: the UI engineer owns
//! and replaces this file.
