//! The serving snapshot: what one configuration builds ([`State`], its [`Backend`])
//! and the [`Shared`] handle a reload swaps. Built by `app`; read by the listener, the
//! request phases and the admin endpoints.

use crate::auth::Authenticator;
use crate::config::Config;
use crate::registry::storage::Backend as Storage;
use crate::registry::Registry;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Where authorised requests are dispatched.
pub enum Backend {
    Upstream(Arc<Pool>),
    /// The bundled registry, served in-process (no loopback hop).
    Registry(Registry<Storage>),
}

/// Everything a request needs, built whole from one configuration (a reload builds a
/// new one and swaps it in; requests in flight keep the one they began with).
pub struct State {
    pub config: Config,
    pub tls: tokio_rustls::TlsAcceptor,
    pub auth: Arc<Authenticator>,
    /// Mints and checks the tokens of the `/token` endpoint (used when the access
    /// policy lets anonymous callers in).
    pub tokens: crate::auth::token::Tokens,
    pub backend: Backend,
}

/// The live configuration snapshot: requests load it, a reload swaps it.
pub type Shared = Arc<ArcSwap<State>>;
