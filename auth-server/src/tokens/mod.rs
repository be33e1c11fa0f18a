//! Our own tokens: signing keys (persisted, rotated) and the JWT access token codec.

pub mod access;
pub mod jwt;
pub mod keys;
