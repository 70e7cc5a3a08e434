//! quantscope: the desktop app ([`gui`]) and the CLI ([`cli`]) over
//! `quantscope-engine`. Neither holds numerics: both call the engine.

pub mod cli;
pub mod gui;
