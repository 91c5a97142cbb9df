//! `ExitRecord`: the last exit as plain data, written by the vcpu after every `run()`.
//!
//! The vcpu is the only owner of an exit's state: it decides what is pending, describes
//! it here, and completes it. Layers above (the JS binding) read this record in place,
//! through the field offsets in [`ExitRecord::LAYOUT`], instead of asking per field —
//! so a port write costs one call into native code, `run()`, and no other.

use std::mem::offset_of;

use crate::HypercallAbi;

/// Which exit a handler may still complete ([`ExitRecord::pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Pending {
    /// Nothing: no exit, or the last one is complete.
    None = 0,
    /// An `Io` access waits for `handle_io`.
    Io = 1,
    /// An `Mmio` access waits for `handle_mmio`.
    Mmio = 2,
    /// A `Hypercall` waits for `handle_hypercall`.
    Hypercall = 3,
    /// An `MsrAccess` waits for `handle_msr`.
    Msr = 4,
    /// A handler is running for the exit: `run()` is refused until it returns.
    Handling = 5,
}

impl Pending {
    /// Every state with its name, as the layers above spell it.
    pub const NAMES: [(&'static str, Pending); 6] = [
        ("None", Pending::None),
        ("Io", Pending::Io),
        ("Mmio", Pending::Mmio),
        ("Hypercall", Pending::Hypercall),
        ("Msr", Pending::Msr),
        ("Handling", Pending::Handling),
    ];

    /// The state a `pending` value stands for.
    pub fn from_u32(value: u32) -> Pending {
        match value {
            1 => Pending::Io,
            2 => Pending::Mmio,
            3 => Pending::Hypercall,
            4 => Pending::Msr,
            5 => Pending::Handling,
            _ => Pending::None,
        }
    }
}

/// Defines [`ExitRecord`] and its [`ExitRecord::LAYOUT`] from one list of fields, so no
/// field can be missing from the layout the layers above read.
macro_rules! exit_record {
    ($(#[doc = $doc:literal])* pub struct ExitRecord { $( $(#[doc = $fdoc:literal])* pub $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[doc = $doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct ExitRecord {
            $( $(#[doc = $fdoc])* pub $field: $ty ),*
        }

        impl ExitRecord {
            /// Every field's name (snake_case), byte offset and size, in order.
            pub const LAYOUT: &'static [(&'static str, usize, usize)] = &[
                $((stringify!($field), offset_of!(ExitRecord, $field), std::mem::size_of::<$ty>())),*
            ];
        }
    };
}

exit_record! {
/// The last exit: its kind, what is pending, and the access, call or MSR it carries.
///
/// An `Io`/`Mmio` access is presented one element at a time: `data_offset` is where the
/// current element's `size` bytes lie in the vcpu's `kvm_run` mapping (a read's data
/// starts zeroed; what is written there goes to the guest), and
/// [`crate::KvmVcpu::next_element`] moves on through a string access (`remaining > 1`).
/// One writer per field: the vcpu writes what an exit is (`kind`, `pending`, `seq`, the
/// access and the call's arguments); a layer that handles an exit in place (the JS
/// facade) writes only answers: a read's data (in `kvm_run`), the call's `results`, the
/// MSR's `msr_data`/`msr_fault`, and `answered`, which it sets to `seq` once it has
/// answered an `Io`/`Mmio` exit (or gave up on any exit). An exit whose `answered`
/// equals its `seq` is pending no more.
    pub struct ExitRecord {
    /// [`crate::VcpuExit::index`] of the last exit.
    pub kind: u32,
    /// A [`Pending`] value.
    pub pending: u32,
    /// Io/Mmio: element width in bytes (1, 2, 4 or 8; MMIO may be any of 1 to 8).
    pub size: u32,
    /// Io/Mmio: elements left, the current one included.
    pub remaining: u32,
    /// Io/Mmio: 1 when the guest writes, 0 when it reads.
    pub is_write: u32,
    /// Io/Mmio: offset of the current element's data in the `kvm_run` mapping.
    pub data_offset: u32,
    /// Numbers the runs: a new exit has a new `seq`. Written by the vcpu.
    pub seq: u32,
    /// Set to `seq` by the layer that answered the exit in place; never by the vcpu.
    pub answered: u32,
    /// Io/Mmio: port number or guest physical address.
    pub address: u64,
    /// Hypercall: the call's id.
    pub hypercall_id: u64,
    /// Hypercall: how many of `args` are arguments.
    pub arg_count: u64,
    /// Hypercall: the arguments.
    pub args: [u64; HypercallAbi::MAX_ARGS],
    /// Hypercall: how many results the guest gets (the defaults' count, or more if set).
    pub result_count: u64,
    /// Hypercall: the results the guest gets; the defaults until a handler sets them.
    pub results: [u64; HypercallAbi::MAX_RESULTS],
    /// MsrAccess: the MSR's index.
    pub msr_index: u64,
    /// MsrAccess: the value written, or the value a read returns (set by the handler).
    pub msr_data: u64,
    /// MsrAccess: 1 for `wrmsr`.
    pub msr_write: u64,
    /// MsrAccess: set to 1 by the handler to give the guest #GP.
    pub msr_fault: u64,
}
}

impl ExitRecord {
    /// The record's size in bytes.
    pub const SIZE: usize = std::mem::size_of::<ExitRecord>();

    /// Describes `abi` (a call waiting for its handler).
    pub fn set_call(&mut self, abi: &HypercallAbi) {
        self.hypercall_id = abi.hypercall_id() as u64;
        self.arg_count = abi.args().len() as u64;
        self.args = [0; HypercallAbi::MAX_ARGS];
        for (slot, a) in self.args.iter_mut().zip(abi.args()) {
            *slot = *a as u64;
        }
        self.result_count = abi.get_results().len() as u64;
        self.results = [0; HypercallAbi::MAX_RESULTS];
        for (slot, r) in self.results.iter_mut().zip(abi.get_results()) {
            *slot = *r as u64;
        }
    }

    /// The call as described, with the results a handler set here.
    pub fn call(&self) -> HypercallAbi {
        let args = self.args.map(|a| a as usize);
        let results = self.results.map(|r| r as usize);
        let n_args = (self.arg_count as usize).min(HypercallAbi::MAX_ARGS);
        let n_results = (self.result_count as usize).min(HypercallAbi::MAX_RESULTS);
        HypercallAbi::new(self.hypercall_id as usize, &args[..n_args], &results[..n_results])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_covers_the_record_field_after_field() {
        // Each field starts where the one before ends (or at the next 8-byte boundary for
        // a 64-bit field), and the last ends at the record's end: a field missing from
        // the layout leaves a gap.
        let mut end = 0usize;
        for &(name, off, size) in ExitRecord::LAYOUT {
            let aligned = if size % 8 == 0 { end.next_multiple_of(8) } else { end };
            assert_eq!(off, aligned, "{name} is not where the field before it ends");
            // 64-bit fields sit on 8-byte boundaries, so a BigUint64Array can index them.
            if size % 8 == 0 {
                assert_eq!(off % 8, 0, "{name}");
            }
            end = off + size;
        }
        assert_eq!(end, ExitRecord::SIZE);
        assert_eq!(ExitRecord::LAYOUT[0].0, "kind");
    }

    #[test]
    fn a_call_round_trips_with_the_results_set() {
        let mut rec = ExitRecord::default();
        rec.set_call(&HypercallAbi::new(9, &[1, 2, 3], &[usize::MAX, 5, 6, 7]));
        assert_eq!((rec.hypercall_id, rec.arg_count, rec.result_count), (9, 3, 4));
        rec.results[0] = 42;
        let abi = rec.call();
        assert_eq!(abi.args(), &[1, 2, 3]);
        assert_eq!(abi.get_results(), &[42, 5, 6, 7]);
    }
}
