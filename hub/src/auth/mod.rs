//! Who is asking, and what they may touch. Every answer of the hub about a
//! desk, room, exam, session, incident or clip goes through here, from the
//! hub's own records only:
//! - [`device`]: a box is the desk of its bearer token (401 when missing,
//!   unknown or revoked); nothing in its request body can make it another.
//! - [`user`]: a console user is the user of their login cookie
//!   ([`user::CurrentUser`], 401 without one); a request that changes
//!   something from another site is a 403.
//! - [`rights`]: a proctor may act on the rooms granted, an admin on all;
//!   an exam, session or incident belongs to its exam's room. Anything
//!   else is a 403 (never a 404 for a proctor, who may not learn which ids
//!   exist).

pub mod device;
pub mod rights;
pub mod user;

pub use user::CurrentUser;
