// C shim for <linux/kvm.h>: Swift imports the structs directly but not the ioctl request macros
// (function-like macros) nor the variadic ioctl(2). Both are re-exported here.
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>

static inline int ckvm_ioctl(int fd, unsigned long request, void *arg) {
    return ioctl(fd, request, arg);
}

static inline int ckvm_ioctl_value(int fd, unsigned long request, unsigned long arg) {
    return ioctl(fd, request, arg);
}

// MARK: - System ioctls
static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

// MARK: - VM ioctls
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long CKVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long CKVM_SIGNAL_MSI = KVM_SIGNAL_MSI;
static const unsigned long CKVM_SET_GSI_ROUTING = KVM_SET_GSI_ROUTING;
static const unsigned long CKVM_IRQFD = KVM_IRQFD;
static const unsigned long CKVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long CKVM_SET_CLOCK = KVM_SET_CLOCK;

// MARK: - vCPU ioctls
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long CKVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long CKVM_SET_SIGNAL_MASK = KVM_SET_SIGNAL_MASK;

// MARK: - kvm_run accessors
// The exit payload is an anonymous union; these keep Swift away from its layout.

static inline struct kvm_run_io_view {
    uint8_t direction;
    uint8_t size;
    uint16_t port;
    uint32_t count;
    uint64_t data_offset;
} ckvm_run_io(const struct kvm_run *run) {
    struct kvm_run_io_view v = {run->io.direction, run->io.size, run->io.port, run->io.count,
                                run->io.data_offset};
    return v;
}

static inline uint64_t ckvm_run_mmio_addr(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint32_t ckvm_run_mmio_len(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t ckvm_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
static inline uint8_t *ckvm_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }

static inline uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t ckvm_run_internal_suberror(const struct kvm_run *run) {
    return run->internal.suberror;
}
static inline uint32_t ckvm_run_system_event_type(const struct kvm_run *run) {
    return run->system_event.type;
}

// MARK: - GSI routing
// struct kvm_irq_routing ends in a flexible array of entries holding a union: built here.

/// One route: `type` is KVM_IRQ_ROUTING_IRQCHIP (a = chip, b = pin) or KVM_IRQ_ROUTING_MSI
/// (a = address_lo, b = address_hi, c = data).
struct ckvm_route {
    uint32_t gsi;
    uint32_t type;
    uint32_t a;
    uint32_t b;
    uint32_t c;
};

/// KVM_SET_GSI_ROUTING with `count` routes; returns the ioctl's result (errno set on -1).
static inline int ckvm_set_gsi_routing(int vmfd, const struct ckvm_route *routes, uint32_t count) {
    size_t size = sizeof(struct kvm_irq_routing) + count * sizeof(struct kvm_irq_routing_entry);
    struct kvm_irq_routing *table = (struct kvm_irq_routing *)calloc(1, size);
    if (table == NULL) {
        errno = ENOMEM;
        return -1;
    }
    table->nr = count;
    for (uint32_t i = 0; i < count; i++) {
        struct kvm_irq_routing_entry *entry = &table->entries[i];
        entry->gsi = routes[i].gsi;
        entry->type = routes[i].type;
        if (routes[i].type == KVM_IRQ_ROUTING_MSI) {
            entry->u.msi.address_lo = routes[i].a;
            entry->u.msi.address_hi = routes[i].b;
            entry->u.msi.data = routes[i].c;
        } else {
            entry->u.irqchip.irqchip = routes[i].a;
            entry->u.irqchip.pin = routes[i].b;
        }
    }
    int result = ioctl(vmfd, KVM_SET_GSI_ROUTING, table);
    int saved = errno;
    free(table);
    errno = saved;
    return result;
}

#endif
