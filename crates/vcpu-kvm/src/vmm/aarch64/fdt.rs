//! The device tree an arm64 Linux boots with, written with rust-vmm's vm-fdt: memory,
//! the cpus (started through PSCI), the GIC, the architected timer, the 16550 UART, the
//! virtio-mmio devices and `chosen` (command line, initrd, console).

use vm_fdt::{FdtWriter, FdtWriterResult};

use crate::arch::aarch64::layout::*;
use crate::kvm::GicVersion;

const GIC_PHANDLE: u32 = 1;
/// Interrupt specifier cells: the kind (shared or private), the number, the trigger.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
/// The 16550's input clock as PCs have it (1.8432 MHz: divisor 1 is 115200 baud).
const UART_CLOCK: u32 = 1_843_200;

/// What the tree describes.
pub struct MachineDescription<'a> {
    pub ram: (u64, u64),
    pub cpus: usize,
    pub gic: GicVersion,
    pub cmdline: &'a str,
    /// Where the initrd is and its size (size 0: none).
    pub initrd: (u64, u64),
    /// Each virtio device's window and interrupt line.
    pub virtio: &'a [(u64, u32)],
}

/// KVM's MPIDR for vcpu `id` (16 per cluster): what a cpu node's `reg` must say.
fn mpidr(id: usize) -> u64 {
    ((id as u64 >> 4) & 0xff) << 8 | (id as u64 & 0xf)
}

/// The flattened tree.
pub fn device_tree(m: &MachineDescription) -> FdtWriterResult<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let memory = fdt.begin_node(&format!("memory@{:x}", m.ram.0))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[m.ram.0, m.ram.1])?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for id in 0..m.cpus {
        let cpu = fdt.begin_node(&format!("cpu@{:x}", mpidr(id)))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_array_u64("reg", &[mpidr(id)])?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    gic(&mut fdt, m)?;

    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let cells: Vec<u32> = TIMER_PPIS.iter().flat_map(|&n| [GIC_PPI, n, IRQ_LEVEL_HIGH]).collect();
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.end_node(timer)?;

    let uart = fdt.begin_node(&format!("uart@{UART_ADDR:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[UART_ADDR, UART_SIZE])?;
    fdt.property_u32("clock-frequency", UART_CLOCK)?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, UART_IRQ, IRQ_EDGE_RISING])?;
    fdt.end_node(uart)?;

    for &(address, irq) in m.virtio {
        let device = fdt.begin_node(&format!("virtio_mmio@{address:x}"))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[address, crate::vmm::virtio::MMIO_SIZE])?;
        fdt.property_array_u32("interrupts", &[GIC_SPI, irq, IRQ_EDGE_RISING])?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(device)?;
    }

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", m.cmdline)?;
    fdt.property_string("stdout-path", &format!("/uart@{UART_ADDR:x}"))?;
    if m.initrd.1 > 0 {
        fdt.property_u64("linux,initrd-start", m.initrd.0)?;
        fdt.property_u64("linux,initrd-end", m.initrd.0 + m.initrd.1)?;
    }
    fdt.end_node(chosen)?;

    fdt.end_node(root)?;
    fdt.finish()
}

fn gic(fdt: &mut FdtWriter, m: &MachineDescription) -> FdtWriterResult<()> {
    let node = fdt.begin_node(&format!("intc@{GIC_DIST:x}"))?;
    match m.gic {
        GicVersion::V3 => {
            fdt.property_string("compatible", "arm,gic-v3")?;
            let redist = GIC_V3_REDIST_SIZE * m.cpus as u64;
            fdt.property_array_u64("reg", &[GIC_DIST, 0x1_0000, GIC_V3_REDIST, redist])?;
        }
        GicVersion::V2 => {
            fdt.property_string("compatible", "arm,cortex-a15-gic")?;
            fdt.property_array_u64("reg", &[GIC_DIST, 0x1000, GIC_V2_CPU, 0x2000])?;
        }
    }
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_with_every_node() {
        let blob = device_tree(&MachineDescription {
            ram: (RAM_START, 256 << 20),
            cpus: 2,
            gic: GicVersion::V3,
            cmdline: "console=ttyS0",
            initrd: (RAM_START + (64 << 20), 4096),
            virtio: &[(0xd000_0000, 5)],
        })
        .unwrap();
        assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        let text = String::from_utf8_lossy(&blob);
        for name in [
            "cpu@1",
            "arm,gic-v3",
            "arm,armv8-timer",
            "ns16550a",
            "virtio_mmio@d0000000",
            "console=ttyS0",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
