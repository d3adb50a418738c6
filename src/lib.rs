//! Portcullis: the secure front door of a private container registry. TLS, htpasswd
//! Basic auth and the nginx-recipe rules in front of upstream registries. This file
//! only declares the modules; dependencies run one way (CONVENTIONS.md 14):
//! cli → app → listener → proxy → {upstream, registry} → vocabulary → leaves.
#![forbid(unsafe_code)]

pub mod access;
pub mod access_log;
pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod certs;
pub mod cli;
pub mod clients;
pub mod config;
pub mod error;
pub mod files;
pub mod listener;
pub mod metrics;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod state;
pub mod systemd;
pub mod tls;
pub mod upstream;
