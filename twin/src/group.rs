//! A group's calls: one rule for the three orders, and the lifecycle steps.

/// A rig's raw answer decoded, for a group's typed calls.
///
/// # Errors
/// [`Error::Codec`](rigwire_core::Error::Codec) if it does not decode as `R`.
#[doc(hidden)]
pub fn decode_answer<R: serde::de::DeserializeOwned>(
    answer: rigwire_core::Payload,
) -> Result<R, rigwire_core::Error> {
    answer.decode().map_err(rigwire_core::Error::from)
}

/// `Group`'s typed calls, raw calls and lifecycle steps, over its own
/// `call(order, method, args: Fn(Codec) -> Result<Payload, CodecError>,
/// timeout) -> GroupResults<Payload>`.
#[doc(hidden)]
#[macro_export]
macro_rules! group_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        $crate::group_calls!(@typed [$($async)?] [$($aw)*] call_all, Concurrent,
            "Calls every rig at once and collects each answer or error by name. A \
             rig that drops out shows as `Disconnected`; the others' answers are kept.");
        $crate::group_calls!(@typed [$($async)?] [$($aw)*] call_in_order, InOrder,
            "Calls the rigs one after another in group order; every rig is called \
             even if an earlier one failed.");
        $crate::group_calls!(@typed [$($async)?] [$($aw)*] call_in_reverse, Reverse,
            "Calls the rigs one after another in reverse group order (for stop and \
             cleanup).");
        $crate::group_calls!(@steps [$($async)?] [$($aw)*]);
    };
    // One typed call of every rig, in `$order` (a `GroupOrder`).
    (@typed [$($async:tt)?] [$($aw:tt)*] $name:ident, $order:ident, $doc:literal) => {
        #[doc = $doc]
        pub $($async)? fn $name<
            A: $crate::Serialize + ?Sized,
            R: $crate::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<R> {
            // Each rig's in its client's call codec.
            let args = |codec| $crate::core::Payload::encode_as(codec, args);
            self.call($crate::core::GroupOrder::$order, method, args, timeout)$($aw)*
                .and_then($crate::decode_answer)
        }
    };
    (@steps [$($async:tt)?] [$($aw:tt)*]) => {
        /// Runs one lifecycle step on every rig, in the step's order.
        pub $($async)? fn step<R: $crate::DeserializeOwned>(
            &self,
            step: $crate::core::GroupStep,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<R> {
            self.call(step.order, step.method, |codec| Ok(step.args_in(codec)), timeout)$($aw)*
                .and_then($crate::decode_answer)
        }

        /// Calls every rig in `order` with `args` as they are (whatever the
        /// clients' call codec), and collects each answer as it came: for a
        /// forwarder, or a binding that decodes answers itself.
        pub $($async)? fn call_raw(
            &self,
            order: $crate::core::GroupOrder,
            method: &str,
            args: $crate::core::Payload,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::Payload> {
            self.call(order, method, |_| Ok(args.clone()), timeout)$($aw)*
        }

        /// `exp.init` on every rig at once.
        pub $($async)? fn init(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.init_with(&$crate::core::InitData::default(), timeout)$($aw)*
        }

        /// `exp.init` with data (iblutil's init dict) on every rig at once.
        pub $($async)? fn init_with(
            &self,
            data: &$crate::core::InitData,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::init(data), timeout)$($aw)*
        }

        /// `exp.start` on every rig at once.
        pub $($async)? fn start(
            &self,
            exp_ref: &$crate::core::ExpRef,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::start(exp_ref), timeout)$($aw)*
        }

        /// `exp.stop` on each rig, in reverse order.
        pub $($async)? fn stop(
            &self,
            immediately: bool,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::stop(immediately), timeout)$($aw)*
        }

        /// `exp.cleanup` on each rig, in reverse order.
        pub $($async)? fn cleanup(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::cleanup(), timeout)$($aw)*
        }

        /// `exp.status` of every rig.
        pub $($async)? fn status(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::status(), timeout)$($aw)*
        }

        /// `exp.info` of every rig.
        pub $($async)? fn info(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpInfo> {
            self.step($crate::core::GroupStep::info(), timeout)$($aw)*
        }
    };
}
