//! Exposed-name dispatch: which names the peer may call.
//!
//! Only registered names (and their aliases) are callable. The core answers
//! every other name with `NoSuchMethod` itself, and answers the built-in
//! [`INTROSPECTION_METHOD`] with the list of what is exposed. The runtime keeps
//! its handlers in a table indexed by [`HandlerId`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Payload};
use crate::error::RegistryError;
use crate::message::Codec;

/// The built-in method that lists what a peer exposes. Its result is a list of
/// [`ExposedMethod`] in the caller's codec.
pub const INTROSPECTION_METHOD: &str = "rigwire.methods";

/// The built-in method that answers the callee's wall clock (spec §6.6):
/// seconds since 1970-01-01 UTC as an `f64`, in the caller's codec. With the
/// round trip a caller estimates the clock offset as NTP does. The runtimes
/// answer it ([`wall_clock`] is the answer), since the core reads no clock;
/// introspection does not list it.
pub const CLOCK_METHOD: &str = "rigwire.clock";

/// The answer to [`CLOCK_METHOD`] given this wall-clock reading: seconds
/// since 1970 UTC (negative before it).
pub fn wall_clock(now: std::time::SystemTime) -> f64 {
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The name a runtime's catch-all handler is registered under
/// ([`Registry::expose_fallback`]): never listed, and a name nobody would
/// call.
const FALLBACK_NAME: &str = "rigwire.*";

/// Whether introspection lists `name` (the built-ins a runtime adds are not).
fn is_listed(name: &str) -> bool {
    name != CLOCK_METHOD && name != FALLBACK_NAME
}

/// How many typos turn `a` into `b`: letters inserted, deleted or changed,
/// and neighbours swapped (the optimal string alignment distance).
fn typos_between(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows of the distance table: two back (for swaps), one back, this one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let changed = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + changed);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
}

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
    /// Each method's signature for people, if described (JSON introspection only).
    signatures: BTreeMap<u32, String>,
    by_name: BTreeMap<String, HandlerId>,
    /// Where names nobody exposed go, instead of `NoSuchMethod` (a relay
    /// forwards them); never listed by introspection.
    fallback: Option<HandlerId>,
    /// Where notifies to names nobody exposed go while calls to them are
    /// still answered `NoSuchMethod` (a relay fans a service's notifies
    /// out to the clients that follow it).
    notify_fallback: Option<HandlerId>,
    /// Why a call to a name nobody exposed fails here, when the caller
    /// could not guess it (a relay's service calling back its caller).
    absent_because: Option<&'static str>,
}

impl Registry {
    /// An empty registry: every call is answered `NoSuchMethod`.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_free(&self, name: &str) -> Result<(), RegistryError> {
        if name.is_empty() || name.len() > crate::message::MAX_NAME {
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

    /// The handler a notify to `name` reaches: as [`lookup`](Self::lookup),
    /// else the notify fallback.
    pub(crate) fn lookup_notify(&self, name: &str) -> Option<HandlerId> {
        self.lookup(name).or(self.notify_fallback)
    }

    /// Sends notifies to names nobody exposed to `id`; calls to them are
    /// still answered `NoSuchMethod`.
    pub(crate) fn set_notify_fallback(&mut self, id: HandlerId) {
        self.notify_fallback = Some(id);
    }

    /// Says `why` in the `NoSuchMethod` answer to a call nobody exposed.
    pub(crate) fn explain_absent(&mut self, why: &'static str) {
        self.absent_because = Some(why);
    }

    /// Why calls to names nobody exposed fail here, if set.
    pub(crate) fn absent_because(&self) -> Option<&'static str> {
        self.absent_because
    }

    /// Whether `name` goes to the fallback: nobody exposed it, and a
    /// fallback is set (a relay forwards it, and its service checks it).
    pub fn forwards(&self, name: &str) -> bool {
        self.fallback.is_some() && !self.by_name.contains_key(name)
    }

    /// Sends calls and notifies to names nobody exposed to `id` instead of
    /// answering `NoSuchMethod` (what a relay does with `service.method`).
    pub fn set_fallback(&mut self, id: Option<HandlerId>) {
        self.fallback = id;
    }

    /// Exposes the built-in [`CLOCK_METHOD`]; the runtime's handler at the
    /// returned id answers it with [`wall_clock`]. Exposing it twice returns
    /// the same id.
    pub fn expose_clock(&mut self) -> HandlerId {
        match self.by_name.get(CLOCK_METHOD) {
            Some(id) => *id,
            None => self.expose_reserved(CLOCK_METHOD),
        }
    }

    /// Registers a catch-all: calls and notifies to names nobody exposed go
    /// to the returned id (the runtime's handler sees the name called)
    /// instead of being answered `NoSuchMethod`. Introspection lists no
    /// name for it.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] if a catch-all is already registered.
    pub fn expose_fallback(&mut self) -> Result<HandlerId, RegistryError> {
        if self.fallback.is_some() {
            return Err(RegistryError::Duplicate(FALLBACK_NAME.to_owned()));
        }
        let id = self.expose_reserved(FALLBACK_NAME);
        self.fallback = Some(id);
        Ok(id)
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

    /// Describes the method exposed as `name` for people: its argument and
    /// result types, such as `(f64, f64) -> f64`. JSON introspection shows
    /// it as `signature` (spec §6.6); postcard introspection has no room for it.
    ///
    /// # Errors
    /// [`RegistryError::NotExposed`] if no method (or alias) is called `name`.
    pub fn describe(&mut self, name: &str, signature: &str) -> Result<(), RegistryError> {
        let id = self
            .by_name
            .get(name)
            .ok_or_else(|| RegistryError::NotExposed(name.to_owned()))?;
        self.signatures.insert(id.0, signature.to_owned());
        Ok(())
    }

    /// The introspection answer (`rigwire.methods`) in `codec`: postcard
    /// records are `(name, aliases)`; JSON records add `signature` where one
    /// was described. A bytes caller is answered in JSON, its partner.
    ///
    /// # Errors
    /// A [`CodecError`] for a codec this side does not speak.
    pub fn introspect(&self, codec: Codec) -> Result<Payload, CodecError> {
        let codec = match codec {
            Codec::Bytes => Codec::Json,
            other => other,
        };
        let listed = || {
            self.methods
                .iter()
                .enumerate()
                .filter(|(_, m)| is_listed(&m.name))
        };
        if codec != Codec::Json {
            let methods: Vec<&ExposedMethod> = listed().map(|(_, m)| m).collect();
            return Payload::encode_as(codec, &methods);
        }
        #[derive(Serialize)]
        struct Described<'a> {
            name: &'a str,
            aliases: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            signature: Option<&'a str>,
        }
        let described: Vec<Described<'_>> = listed()
            .map(|(i, m)| Described {
                name: &m.name,
                aliases: &m.aliases,
                signature: self.signatures.get(&(i as u32)).map(String::as_str),
            })
            .collect();
        Payload::encode_as(codec, &described)
    }

    /// Whether anything is exposed besides the built-ins a runtime adds:
    /// whether the peer has anything to call or notify here.
    pub fn exposes_anything(&self) -> bool {
        self.methods.iter().any(|m| is_listed(&m.name))
    }

    /// The exposed name `asked` was most likely meant to be (a typo: a
    /// letter missing, extra, wrong or two swapped; or another case), for
    /// the `NoSuchMethod` answer; `None` if no name is that close.
    pub fn closest_to(&self, asked: &str) -> Option<&str> {
        /// The pairs of letters compared, in all, for one answer: a peer
        /// that sends unknown names as fast as it can costs the rig little
        /// (about 160 names of twenty letters are looked at, in the order
        /// they were exposed).
        const COMPARED: usize = 1 << 16;
        if asked.len() > 64 {
            return None;
        }
        let allowed = if asked.chars().count() <= 4 { 1 } else { 2 };
        let mut budget = COMPARED;
        self.methods
            .iter()
            .filter(|m| is_listed(&m.name))
            .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
            .filter(|name| name.len().abs_diff(asked.len()) <= allowed)
            .map_while(|name| {
                budget = budget.checked_sub(name.len() * asked.len())?;
                let distance = match name.eq_ignore_ascii_case(asked) {
                    true => 0,
                    false => typos_between(asked, name),
                };
                Some((distance, name.as_str()))
            })
            .filter(|(distance, _)| *distance <= allowed)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, name)| name)
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

/// The exposed names of one endpoint, each with its handler of whatever type
/// the runtime runs (`E`): the [`Registry`] the core dispatches by, and the
/// handlers in the order it gave out their ids, so that a [`HandlerId`] from
/// the core finds its handler. Every table answers the built-in
/// [`CLOCK_METHOD`], with the handler its runtime gives.
///
/// A runtime's `Handlers` adds the typed ways to expose a handler and
/// dereferences to this table for the rest (`describe`, `alias`).
#[derive(Clone)]
pub struct HandlerTable<E> {
    registry: Registry,
    entries: Vec<E>,
}

impl<E> std::fmt::Debug for HandlerTable<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerTable")
            .field("methods", &self.registry.methods())
            .finish()
    }
}

impl<E> HandlerTable<E> {
    /// A table that answers only [`CLOCK_METHOD`], with `clock`.
    pub fn new(clock: E) -> Self {
        let mut registry = Registry::new();
        registry.expose_clock();
        HandlerTable {
            registry,
            entries: vec![clock],
        }
    }

    /// Exposes `name`, answered by `handler`.
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) for an empty, over-long,
    /// reserved or duplicate name.
    pub fn insert(&mut self, name: &str, handler: E) -> Result<HandlerId, crate::Error> {
        let id = self.registry.expose(name)?;
        self.entries.push(handler);
        Ok(id)
    }

    /// Sends calls and notifies to names nobody exposed to `handler` instead
    /// of answering `NoSuchMethod` (see [`Registry::expose_fallback`]).
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) if a catch-all is already set.
    pub fn insert_fallback(&mut self, handler: E) -> Result<HandlerId, crate::Error> {
        let id = self.registry.expose_fallback()?;
        self.entries.push(handler);
        Ok(id)
    }

    /// Describes `name` for people, as `rigwire.methods` shows it in JSON:
    /// its argument and result types, such as `(f64, f64) -> f64`. Typed
    /// handlers are described from their Rust types; this overrides that.
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) if `name` is not exposed.
    pub fn describe(&mut self, name: &str, signature: &str) -> Result<&mut Self, crate::Error> {
        self.registry.describe(name, signature)?;
        Ok(self)
    }

    /// Makes `alias` reach the handler exposed as `name`.
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) if `name` is not exposed
    /// or `alias` is taken.
    pub fn alias(&mut self, alias: &str, name: &str) -> Result<&mut Self, crate::Error> {
        let id = self.lookup(name)?;
        self.registry.alias(alias, id)?;
        Ok(self)
    }

    /// The id of the handler exposed as `name` (or one of its aliases).
    ///
    /// # Errors
    /// [`Error::Registry`](crate::Error::Registry) if `name` is not exposed.
    pub fn lookup(&self, name: &str) -> Result<HandlerId, crate::Error> {
        self.registry
            .lookup(name)
            .ok_or_else(|| RegistryError::NotExposed(name.to_owned()).into())
    }

    /// The names exposed, for a [`Connection`](crate::Connection).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The handler of `id`; `None` for an id this table did not give out.
    pub fn get(&self, id: HandlerId) -> Option<&E> {
        self.entries.get(id.0 as usize)
    }
}

/// Where a handler runs, in a runtime with both a thread that reads the
/// connection and a pool of threads for handlers (rigwire-std; an async
/// runtime polls each handler where the call was read instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// On the pool until proven fast ([`FAST_RUNS`] runs in a row under
    /// [`FAST_RUN`]), then on the reading thread, until one slow run sends
    /// it back to the pool (the default).
    #[default]
    Adaptive,
    /// Always on the reading thread: lowest latency; the connection reads
    /// nothing else while it runs, so use it only for handlers that never block.
    Inline,
    /// Always on the pool: for handlers that block or run long.
    Pool,
}

/// Runs under this long count as fast.
pub const FAST_RUN: std::time::Duration = std::time::Duration::from_micros(500);

/// Consecutive fast runs after which an adaptive handler runs inline.
pub const FAST_RUNS: u32 = 3;

impl Dispatch {
    /// Whether the handler's next call runs on the thread that read it,
    /// given its consecutive fast runs so far.
    pub fn runs_inline(self, fast_runs: u32) -> bool {
        match self {
            Dispatch::Inline => true,
            Dispatch::Pool => false,
            Dispatch::Adaptive => fast_runs >= FAST_RUNS,
        }
    }

    /// Whether the handler learns from its run times (only adaptive ones:
    /// the others need not read the clock).
    pub fn learns(self) -> bool {
        self == Dispatch::Adaptive
    }

    /// The consecutive fast runs after one more run that took `took`.
    pub fn fast_runs_after(fast_runs: u32, took: std::time::Duration) -> u32 {
        match took <= FAST_RUN {
            true => fast_runs.saturating_add(1),
            false => 0,
        }
    }

    /// As a number, for a runtime to keep in an atomic.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Back from [`as_u8`](Self::as_u8); an unknown number is `Adaptive`.
    pub fn from_u8(n: u8) -> Dispatch {
        match n {
            1 => Dispatch::Inline,
            2 => Dispatch::Pool,
            _ => Dispatch::Adaptive,
        }
    }
}

/// The answer to a call whose handler panicked with `panic`, naming the
/// method and what the panic said.
pub fn handler_panicked(method: &str, panic: &(dyn std::any::Any + Send)) -> crate::RemoteError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    crate::RemoteError::new(
        crate::ErrorKind::Panicked,
        format!("handler '{method}' panicked: {what}"),
    )
}

/// A typed handler's signature for [`Registry::describe`], from its Rust
/// types with their module paths left out: `(f64, f64) -> f64`. The names are
/// what the compiler reports, for people to read, not for parsing.
pub fn rust_signature<A, R>() -> String {
    fn short(path: &str) -> String {
        let mut out = String::with_capacity(path.len());
        let mut word = String::new();
        for c in path.chars() {
            if c.is_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
            } else {
                out.push_str(word.rsplit("::").next().unwrap_or(""));
                word.clear();
                out.push(c);
            }
        }
        out.push_str(word.rsplit("::").next().unwrap_or(""));
        out
    }
    format!(
        "{} -> {}",
        short(std::any::type_name::<A>()),
        short(std::any::type_name::<R>())
    )
}
