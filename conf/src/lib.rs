//! What the agent (`invigil`) and the hub (`invigil-hub`) read the same
//! way, so a school's IT meets one behaviour on both:
//!
//! - a config file is strict TOML: an unknown key or a wrong type is an
//!   error naming the file and the key, on one line ([`file`]);
//! - a secret is found and read by one rule: the configured file, else the
//!   systemd credential, else the file the unit loads it from; a blank file
//!   is an error, a blank credential "not configured" ([`secret`]);
//! - clip storage is `s3://BUCKET[/PREFIX]` or `file://DIR`, with S3
//!   credentials in a `KEY=VALUE` file and one way to build the S3 client
//!   ([`storage`]).
//!
//! No network and no state: the crate reads files and builds values.
//!
//! # Layout
//! - [`file`]: [`file::ConfigError`], [`file::load`], [`file::parse`].
//! - [`secret`]: [`secret::Secret`], [`secret::Sources`], [`secret::CredentialError`].
//! - [`storage`]: [`storage::Location`], [`storage::S3Credentials`], [`storage::S3Settings`].

pub mod file;
pub mod secret;
pub mod storage;
