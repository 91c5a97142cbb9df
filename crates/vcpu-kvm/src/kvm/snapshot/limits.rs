//! What a snapshot file may claim: the size of its state, what the state's lengths may
//! make the decoder allocate, and the guest memory and vcpu state it declares. Each is
//! checked before anything is allocated or mapped for it (the limits are listed in
//! SECURITY.md).

use super::format::SnapshotState;
use crate::kvm::memory::PAGE_SIZE;

/// The largest state a file may declare: 64 MiB, enough for about 2 TiB of guest memory
/// (one bit per page) and the VMM's device state. A file declaring more is refused
/// before anything of it is read.
pub(crate) const MAX_STATE_LEN: u64 = 64 << 20;

/// The state, decoded within bincode's configured limit on what its lengths may claim.
/// The limit is a constant: the smallest class that holds eight times the encoded state
/// (each element of a vector takes at least one byte encoded, at most eight in memory),
/// so what the decoder allocates stays in proportion to the file.
pub(super) fn decode_state(raw: &[u8]) -> std::result::Result<SnapshotState, bincode::error::DecodeError> {
    use bincode::config::standard;
    const MIB: usize = 1 << 20;
    let decoded = match raw.len() {
        0..=MIB => bincode::serde::decode_from_slice(raw, standard().with_limit::<{ 8 * MIB }>()),
        n if n <= 8 * MIB => bincode::serde::decode_from_slice(raw, standard().with_limit::<{ 64 * MIB }>()),
        _ => bincode::serde::decode_from_slice(raw, standard().with_limit::<{ 8 * MAX_STATE_LEN as usize }>()),
    };
    decoded.map(|(state, _)| state)
}

/// What the state says, checked before any of it is used: each region's size and place,
/// all of guest memory against what this host could hold, and the VM and vcpu state.
pub(super) fn check_state(state: &SnapshotState) -> std::result::Result<(), String> {
    let mut total: u64 = 0;
    for r in &state.regions {
        let end = r.guest_address.checked_add(r.size);
        if r.size == 0
            || !r.size.is_multiple_of(PAGE_SIZE)
            || !r.guest_address.is_multiple_of(PAGE_SIZE)
            || end.is_none_or(|end| end > 1 << crate::kvm::MAX_GUEST_ADDRESS_BITS)
        {
            return Err(format!(
                "a region's guest address {:#x} and size {:#x} are not a page-aligned range of guest memory",
                r.guest_address, r.size
            ));
        }
        total = total.saturating_add(r.size);
    }
    let host = host_memory();
    if total > host {
        return Err(format!(
            "its regions' sizes add up to {total:#x} bytes of guest memory, more than this host has ({host:#x} bytes of RAM and swap)"
        ));
    }
    state.vm.check(state.config.irqchip)?;
    for v in &state.vcpus {
        v.check()?;
    }
    Ok(())
}

/// The host's RAM and swap, in bytes (what guest memory restored from a file must fit).
fn host_memory() -> u64 {
    // SAFETY: sysinfo fills the struct we pass, nothing else.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a valid pointer to our own struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return u64::MAX;
    }
    let unit = u64::from(info.mem_unit.max(1));
    (info.totalram as u64)
        .saturating_add(info.totalswap as u64)
        .saturating_mul(unit)
}
