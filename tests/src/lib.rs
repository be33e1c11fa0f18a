//! Test harness: starts the real binaries on ephemeral loopback ports and talks HTTP to them,
//! plus the mock TaskManager (library part; its binary is `mock-taskmanager`).
//!
//! Convention shared by every server binary of the workspace: logs go to stderr, and once the
//! listener is bound the process prints exactly one line `listening on http://ADDR` to stdout.

pub mod browser;
pub mod jwt;
pub mod mock_taskmanager;
pub mod spawn;
pub mod stack;

pub use spawn::{Server, bin_path};
