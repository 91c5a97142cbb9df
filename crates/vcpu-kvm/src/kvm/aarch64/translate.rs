//! Guest virtual to physical addresses on arm64, by walking the guest's page tables as
//! its MMU would (`KVM_TRANSLATE` exists on x86 only): TTBR0_EL1 or TTBR1_EL1 by the
//! address's top bit, 4, 16 or 64 KiB granules, 3 to 5 levels, LPA2's 52-bit outputs.

use crate::error::Result;
use crate::kvm::vcpu::KvmVcpu;

const SCTLR_EL1: u64 = super::sys_reg(3, 0, 1, 0, 0);
const TCR_EL1: u64 = super::sys_reg(3, 0, 2, 0, 2);
const TTBR0_EL1: u64 = super::sys_reg(3, 0, 2, 0, 0);
const TTBR1_EL1: u64 = super::sys_reg(3, 0, 2, 0, 1);
/// Output-address bits [47:12] of a descriptor or TTBR (the granule masks the low ones).
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

impl KvmVcpu {
    /// The guest physical address of `gva` under the vcpu's current translation regime
    /// (EL1&0), `None` where it maps nothing. With the MMU off the address is physical.
    pub fn translate_gva(&self, gva: u64) -> Result<Option<u64>> {
        if self.get_one_reg(SCTLR_EL1)? & 1 == 0 {
            return Ok(Some(gva));
        }
        let tcr = self.get_one_reg(TCR_EL1)?;
        let upper = gva >> 55 & 1 == 1;
        let (tsz, granule, ttbr) = if upper {
            let g = match tcr >> 30 & 3 {
                0b01 => 14,
                0b11 => 16,
                _ => 12,
            };
            (tcr >> 16 & 0x3f, g, self.get_one_reg(TTBR1_EL1)?)
        } else {
            let g = match tcr >> 14 & 3 {
                0b10 => 14,
                0b01 => 16,
                _ => 12,
            };
            (tcr & 0x3f, g, self.get_one_reg(TTBR0_EL1)?)
        };
        // LPA2 (TCR_EL1.DS): output bits [51:50] sit in descriptor bits [9:8].
        let lpa2 = tcr >> 59 & 1 == 1;
        let va_bits = 64 - tsz;
        // Addresses outside the region the TTBR covers fault.
        let top = if upper { u64::MAX << va_bits } else { 0 };
        if va_bits >= 64 || gva & (u64::MAX << va_bits) != top {
            return Ok(None);
        }
        let stride = granule - 3;
        let levels = (va_bits - granule).div_ceil(stride);
        let oa = |desc: u64| {
            let mut a = desc & OA_MASK & !((1 << granule) - 1);
            if lpa2 {
                a |= (desc >> 8 & 3) << 50;
            }
            a
        };
        // The first table (BADDR, bits [47:1]: a top level with few entries is smaller
        // than a granule); with 52-bit outputs BADDR[51:48] sit in TTBR bits [5:2].
        let mut table = ttbr & 0x0000_ffff_ffff_fffe;
        if lpa2 {
            table = (table & !0x3f) | (ttbr >> 2 & 0xf) << 48;
        }
        for i in 0..levels {
            let shift = granule + stride * (levels - 1 - i);
            let bits = if i == 0 { va_bits - shift } else { stride };
            let index = gva >> shift & ((1 << bits) - 1);
            let mut raw = [0u8; 8];
            if self.vm.read(table + index * 8, &mut raw).is_err() {
                return Ok(None);
            }
            let desc = u64::from_le_bytes(raw);
            if desc & 1 == 0 {
                return Ok(None);
            }
            let last = i == levels - 1;
            if !last && desc & 2 == 0 {
                // A block: the rest of the address is its offset.
                return Ok(Some(oa(desc) & !((1 << shift) - 1) | gva & ((1 << shift) - 1)));
            }
            if last {
                if desc & 2 == 0 {
                    return Ok(None);
                }
                return Ok(Some(oa(desc) | gva & ((1 << granule) - 1)));
            }
            table = oa(desc);
        }
        Ok(None)
    }
}
