//! Exposed-name dispatch: which names the peer may call.
//!
//! Only registered names (and their aliases) are callable. The core answers
//! every other name with `NoSuchMethod` itself, and answers the built-in
//! [`INTROSPECTION_METHOD`] with the list of what is exposed. The runtime keeps
//! its handlers in a table indexed by [`HandlerId`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// The built-in method that lists what a peer exposes. Its result is a list of
/// [`ExposedMethod`] in the caller's codec.
pub const INTROSPECTION_METHOD: &str = "rigwire.methods";

/// Prefix reserved for names the protocol defines.
pub const RESERVED_PREFIX: &str = "rigwire.";

/// Identifies one registered handler; an index into the runtime's handler table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub u32);

/// One exposed method as introspection reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposedMethod {
    /// The canonical name.
    pub name: String,
    /// Other names that reach the same handler.
    pub aliases: Vec<String>,
}

/// The names a connection answers, each mapped to a handler.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    methods: Vec<ExposedMethod>,
    by_name: BTreeMap<String, HandlerId>,
    /// Where names nobody exposed go, instead of `NoSuchMethod` (a relay
    /// forwards them); never listed by introspection.
    fallback: Option<HandlerId>,
}

impl Registry {
    /// An empty registry: every call is answered `NoSuchMethod`.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_free(&self, name: &str) -> Result<(), RegistryError> {
        if name.is_empty() || name.len() > 255 {
            return Err(RegistryError::BadLength(name.len()));
        }
        if name.starts_with(RESERVED_PREFIX) {
            return Err(RegistryError::Reserved(name.to_owned()));
        }
        if self.by_name.contains_key(name) {
            return Err(RegistryError::Duplicate(name.to_owned()));
        }
        Ok(())
    }

    /// Exposes `name`; the returned id is the next index into the runtime's table.
    ///
    /// # Errors
    /// [`RegistryError`] for an empty, over-long, reserved or duplicate name.
    pub fn expose(&mut self, name: &str) -> Result<HandlerId, RegistryError> {
        self.check_free(name)?;
        let id = HandlerId(self.methods.len() as u32);
        self.methods.push(ExposedMethod {
            name: name.to_owned(),
            aliases: Vec::new(),
        });
        self.by_name.insert(name.to_owned(), id);
        Ok(id)
    }

    /// Makes `alias` reach the handler `id`.
    ///
    /// # Errors
    /// [`RegistryError`] for a bad or taken alias, or an unknown `id`.
    pub fn alias(&mut self, alias: &str, id: HandlerId) -> Result<(), RegistryError> {
        self.check_free(alias)?;
        let method = self
            .methods
            .get_mut(id.0 as usize)
            .ok_or(RegistryError::UnknownHandler(id.0))?;
        method.aliases.push(alias.to_owned());
        self.by_name.insert(alias.to_owned(), id);
        Ok(())
    }

    /// The handler a name reaches (the fallback, if one is set, for names
    /// not exposed).
    pub fn lookup(&self, name: &str) -> Option<HandlerId> {
        self.by_name.get(name).copied().or(self.fallback)
    }

    /// Sends calls and notifies to names nobody exposed to `id` instead of
    /// answering `NoSuchMethod` (what a relay does with `service.method`).
    pub fn set_fallback(&mut self, id: Option<HandlerId>) {
        self.fallback = id;
    }

    /// Exposes a name the protocol reserves (`rigwire.*`), for the core's own services.
    pub(crate) fn expose_reserved(&mut self, name: &str) -> HandlerId {
        let id = HandlerId(self.methods.len() as u32);
        self.methods.push(ExposedMethod {
            name: name.to_owned(),
            aliases: Vec::new(),
        });
        self.by_name.insert(name.to_owned(), id);
        id
    }

    /// Everything exposed, in registration order.
    pub fn methods(&self) -> &[ExposedMethod] {
        &self.methods
    }

    /// The canonical name of a handler.
    pub fn name_of(&self, id: HandlerId) -> Option<&str> {
        self.methods.get(id.0 as usize).map(|m| m.name.as_str())
    }
}
