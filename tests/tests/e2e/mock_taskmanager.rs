//! Black-box tests of the mock TaskManager.
