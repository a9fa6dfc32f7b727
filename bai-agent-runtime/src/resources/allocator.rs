//! The node's allocation maps and the [`Allocator`] that hands them out per kernel.
//!
//! One [`Allocator`] owns every map of the node — CPU cores, memory, and one map per slot of
//! each accelerator plugin — behind a single `std::sync::Mutex`. A request is **planned**
//! against the maps and then **committed** in one step while the lock is held, so concurrent
//! kernel creations can never take the same core or device twice, and a request that fails at
//! any point (an unknown slot, a slot that does not fit, a plugin that cannot describe its
//! devices) leaves every map exactly as it was: nothing is taken until everything fits.
//!
//! Slots are planned in the configured `allocation-order` (default `cuda, rocm, tpu, cpu, mem`,
//! as the original); the order decides which shortage a failed request reports. Per slot,
//! amounts are split over devices by the rule in the slot-map docs: least-loaded devices first,
//! the fewest that cover the request, spread evenly.
//!
//! **CPU.** Each core holds 1 CPU. An integer request on an idle node takes whole idle cores
//! and gets only a cpuset (`0-1,4`). A fractional request (or one that had to share partly
//! used cores) is charged over the least-loaded cores and additionally gets `nano_cpus` (a CFS
//! limit of exactly the request), so the amounts charged to cores never exceed a core and the
//! CPU total never exceeds the node's capacity — [`Allocator::available`] is always what can
//! really be allocated.
//!
//! **Memory.** `mem` includes shared memory, as in the original: the Docker memory (and
//! memory+swap) limit is `mem − shmem`, and `shmem` becomes the `/dev/shm` size.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bai_core::{BinarySize, Decimal, KernelId, KnownSlots, ResourceSlot};
use serde::{Deserialize, Serialize};

use super::cpuset::format_cpu_list;
use super::discovery::NodeCapacity;
use super::slot_map::SlotMap;
use crate::accelerator::{natural_cmp, AcceleratorPlugin, DeviceAllocation, SlotDefinition};
use crate::error::{Error, Result};
use crate::runtime::{ContainerSpec, DeviceRequest};

/// The step of `cpu` amounts (the manager quantizes counts to three decimals).
pub const CPU_QUANTUM: Decimal = Decimal::from_parts(1, 0, 0, false, 3);

const NANOS_PER_CPU: i64 = 1_000_000_000;

/// Options of an [`Allocator`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllocatorConfig {
    /// The order devices are allocated in (`resource.allocation-order`): plugin keys, `cpu`
    /// and `mem`. Keys without a plugin on this node are skipped; plugins not listed come after
    /// the listed ones, and `cpu`/`mem` last if not listed.
    pub allocation_order: Vec<String>,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self { allocation_order: ["cuda", "rocm", "tpu", "cpu", "mem"].map(String::from).to_vec() }
    }
}

/// What one kernel holds, and what its container needs for it.
///
/// It is serialisable so the agent can store it in a container label and
/// [restore](Allocator::restore) it after a restart. Decimal amounts are strings in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// The slots charged: the request's non-zero amounts.
    pub slots: ResourceSlot,
    /// Pinned cores and the CPU amount charged to each.
    pub cores: BTreeMap<u32, Decimal>,
    /// The pinned cores as a CPU list (`CpusetCpus`), e.g. `0-1,4`.
    pub cpuset: String,
    /// A CFS limit in billionths of a CPU (`NanoCpus`), set when the request is fractional or
    /// its cores are shared with other kernels.
    pub nano_cpus: Option<i64>,
    /// The memory charged (the `mem` slot, shared memory included), in bytes.
    pub memory: u64,
    /// The Docker `Memory` and `MemorySwap` limit: `memory` minus the shared memory.
    pub memory_limit: u64,
    /// The `/dev/shm` size (`ShmSize`), when shared memory was requested.
    pub shm_size: Option<u64>,
    /// Per plugin, what was taken from which device, in allocation order.
    pub devices: Vec<DeviceAllocation>,
    /// Environment the devices contribute (`CUDA_VISIBLE_DEVICES`, …) plus `GPU_COUNT`,
    /// `N_GPUS` and, with accelerators, `GPU_TYPE`, `GPU_MODEL_NAME`, `GPU_CONFIG`
    /// (`<i>:<memory>` per device) and `TF_GPU_MEMORY_ALLOC` (`<i>:<MiB>`).
    pub env: BTreeMap<String, String>,
    /// Docker device requests the devices contribute.
    pub device_requests: Vec<DeviceRequest>,
    /// Host device nodes the devices need (`/dev/kfd`, `/dev/dri/renderD128`, `/dev/accel0`),
    /// exposed at the same paths in the container.
    pub device_nodes: Vec<String>,
}

impl Allocation {
    /// The pinned core ids, sorted.
    pub fn core_ids(&self) -> Vec<u32> {
        self.cores.keys().copied().collect()
    }

    /// Sets the container's memory, shared memory, cpuset, CFS limit, device requests, device
    /// nodes and environment (the allocation's variables win over ones already there).
    pub fn apply_to(&self, spec: &mut ContainerSpec) {
        spec.memory_limit = Some(self.memory_limit);
        spec.shm_size = self.shm_size;
        spec.cpuset_cpus = Some(self.cpuset.clone());
        spec.nano_cpus = self.nano_cpus;
        spec.devices.extend(self.device_requests.iter().cloned());
        spec.device_nodes.extend(self.device_nodes.iter().cloned());
        spec.env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// The slots its parts add up to: `cpu` from the cores, `mem`, and each device slot.
    fn parts_total(&self) -> Result<ResourceSlot> {
        let mut slots = ResourceSlot::new();
        let cpu: Decimal = self.cores.values().copied().sum();
        if !cpu.is_zero() {
            slots.set("cpu", cpu.normalize())?;
        }
        if self.memory > 0 {
            slots.set("mem", Decimal::from(self.memory))?;
        }
        for device in &self.devices {
            for (slot, amounts) in &device.slots {
                let sum: Decimal = amounts.values().copied().sum();
                if !sum.is_zero() {
                    slots.set(slot, sum.normalize())?;
                }
            }
        }
        Ok(slots)
    }
}

#[derive(Debug)]
struct MemMap {
    capacity: u64,
    used: u64,
}

impl MemMap {
    fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used)
    }

    fn check(&self, bytes: u64) -> Result<()> {
        if bytes > self.free() {
            return Err(Error::Insufficient {
                resource: "mem".to_string(),
                requested: BinarySize::new(bytes).to_string(),
                available: BinarySize::new(self.free()).to_string(),
            });
        }
        Ok(())
    }
}

#[derive(Debug)]
struct State {
    cpu: SlotMap<u32>,
    mem: MemMap,
    devices: BTreeMap<String, SlotMap<String>>,
    kernels: BTreeMap<KernelId, Allocation>,
}

impl State {
    /// Checks every part of `alloc` against the maps, then takes them all.
    fn commit(&mut self, kernel_id: KernelId, alloc: &Allocation) -> Result<()> {
        self.cpu.check(&alloc.cores)?;
        self.mem.check(alloc.memory)?;
        let mut seen = BTreeSet::new();
        for device in &alloc.devices {
            for (slot, amounts) in &device.slots {
                if !seen.insert(slot.as_str()) {
                    return Err(Error::invalid("allocation.devices", format!("slot {slot} appears twice")));
                }
                let map = self.devices.get(slot).ok_or_else(|| {
                    Error::invalid("allocation.devices", format!("no plugin on this node provides {slot}"))
                })?;
                map.check(amounts)?;
            }
        }
        self.cpu.mark(&alloc.cores);
        self.mem.used = self.mem.used.saturating_add(alloc.memory);
        for device in &alloc.devices {
            for (slot, amounts) in &device.slots {
                if let Some(map) = self.devices.get_mut(slot) {
                    map.mark(amounts);
                }
            }
        }
        self.kernels.insert(kernel_id, alloc.clone());
        Ok(())
    }

    fn release(&mut self, kernel_id: &KernelId) -> Option<Allocation> {
        let alloc = self.kernels.remove(kernel_id)?;
        self.cpu.unmark(&alloc.cores);
        self.mem.used = self.mem.used.saturating_sub(alloc.memory);
        for device in &alloc.devices {
            for (slot, amounts) in &device.slots {
                if let Some(map) = self.devices.get_mut(slot) {
                    map.unmark(amounts);
                }
            }
        }
        Some(alloc)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Plugin(usize),
    Cpu,
    Mem,
}

/// The node's allocation maps (see the module docs).
///
/// ```
/// use bai_agent_runtime::bai_core::{Decimal, KernelId, ResourceSlot};
/// use bai_agent_runtime::resources::{Allocator, AllocatorConfig, NodeCapacity};
///
/// let capacity = NodeCapacity::new(vec![0, 1, 2, 3], 4.into(), 8 << 30)?;
/// let allocator = Allocator::new(&capacity, Vec::new(), &AllocatorConfig::default())?;
/// let request = ResourceSlot::from_pairs([("cpu", Decimal::new(15, 1)), ("mem", Decimal::from(2u64 << 30))])?;
/// let kernel = KernelId::new_random();
/// let alloc = allocator.allocate(kernel, &request, Some(64 << 20))?;
/// assert_eq!(alloc.cpuset, "0-1");
/// assert_eq!(alloc.nano_cpus, Some(1_500_000_000));
/// assert_eq!(alloc.memory_limit, (2 << 30) - (64 << 20));
/// assert_eq!(allocator.available().get("cpu"), Decimal::new(25, 1));
/// allocator.release(&kernel);
/// assert_eq!(allocator.available(), allocator.capacity());
/// # Ok::<(), bai_agent_runtime::Error>(())
/// ```
#[derive(Debug)]
pub struct Allocator {
    plugins: Vec<Arc<dyn AcceleratorPlugin>>,
    plugin_slots: Vec<Vec<SlotDefinition>>,
    steps: Vec<Step>,
    known: KnownSlots,
    state: Mutex<State>,
}

impl Allocator {
    /// Builds the maps: `capacity`'s cores (1 CPU each, `capacity.cpu` in total) and memory,
    /// and every slot of every plugin. Fails on duplicate plugin keys or order entries, a slot
    /// not named `<key>.<kind>`, a device in two slots of one plugin, or capacities that are
    /// not multiples of their slot's step.
    pub fn new(
        capacity: &NodeCapacity,
        plugins: Vec<Arc<dyn AcceleratorPlugin>>,
        config: &AllocatorConfig,
    ) -> Result<Self> {
        let cpu = SlotMap::new(
            "cpu",
            CPU_QUANTUM,
            capacity.cores.iter().map(|&c| (c, Decimal::ONE)).collect(),
            Some(capacity.cpu),
        )?;
        let mut known = KnownSlots::new();
        let mut devices = BTreeMap::new();
        let mut plugin_slots = Vec::new();
        let mut keys = BTreeSet::new();
        for plugin in &plugins {
            let key = plugin.key().to_string();
            crate::accelerator::validate_key(&key)?;
            if !keys.insert(key.clone()) {
                return Err(Error::invalid("accelerator plugins", format!("two plugins have the key {key:?}")));
            }
            let slots = plugin.slots();
            let mut claimed = BTreeSet::new();
            for def in &slots {
                let field = || format!("plugin {key}");
                if def.name.strip_prefix(&format!("{key}.")).is_none_or(str::is_empty) {
                    return Err(Error::invalid(field(), format!("slot {:?} must be named {key}.<kind>", def.name)));
                }
                if devices.contains_key(&def.name) {
                    return Err(Error::invalid(field(), format!("slot {} is provided twice", def.name)));
                }
                for (id, _) in &def.per_device {
                    if !claimed.insert(id.clone()) {
                        return Err(Error::invalid(field(), format!("device {id} appears in two slots")));
                    }
                }
                known.insert(&def.name, def.slot_type)?;
                devices.insert(
                    def.name.clone(),
                    SlotMap::new(&def.name, def.kind.quantum(), def.per_device.clone(), None)?,
                );
            }
            plugin_slots.push(slots);
        }
        let steps = order_steps(&config.allocation_order, &plugins)?;
        let state = State { cpu, mem: MemMap { capacity: capacity.mem, used: 0 }, devices, kernels: BTreeMap::new() };
        Ok(Self { plugins, plugin_slots, steps, known, state: Mutex::new(state) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // the state is only changed after every check passed, so a panic elsewhere while the
        // lock was held cannot have left it half-updated
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plugins, in the order given.
    pub fn plugins(&self) -> &[Arc<dyn AcceleratorPlugin>] {
        &self.plugins
    }

    /// The slots this node provides with their types: `cpu`, `mem` and every plugin slot.
    pub fn known_slots(&self) -> KnownSlots {
        self.known.clone()
    }

    /// The node's total per slot (every known slot present).
    pub fn capacity(&self) -> ResourceSlot {
        let state = self.lock();
        self.collect(&state, |m| m.capacity(), state.cpu.capacity(), state.mem.capacity)
    }

    /// What is taken per slot (every known slot present).
    pub fn occupied(&self) -> ResourceSlot {
        let state = self.lock();
        self.collect(&state, |m| m.used(), state.cpu.used(), state.mem.used)
    }

    /// What is left per slot: capacity − occupied (every known slot present).
    pub fn available(&self) -> ResourceSlot {
        let state = self.lock();
        let cap = self.collect(&state, |m| m.capacity(), state.cpu.capacity(), state.mem.capacity);
        let used = self.collect(&state, |m| m.used(), state.cpu.used(), state.mem.used);
        &cap - &used
    }

    fn collect(
        &self,
        state: &State,
        per_slot: impl Fn(&SlotMap<String>) -> Decimal,
        cpu: Decimal,
        mem: u64,
    ) -> ResourceSlot {
        let mut out = ResourceSlot::new();
        // every name here was validated when the maps were built
        let _ = out.set("cpu", cpu.normalize());
        let _ = out.set("mem", Decimal::from(mem));
        for (name, map) in &state.devices {
            let _ = out.set(name, per_slot(map).normalize());
        }
        out
    }

    /// The allocations held, by kernel.
    pub fn allocations(&self) -> BTreeMap<KernelId, Allocation> {
        self.lock().kernels.clone()
    }

    /// The allocation a kernel holds.
    pub fn allocation(&self, kernel_id: &KernelId) -> Option<Allocation> {
        self.lock().kernels.get(kernel_id).cloned()
    }

    /// Allocates `request` (slot amounts; `cpu` and `mem` required, zeros ignored) for a
    /// kernel, with `shmem` bytes of it as shared memory.
    ///
    /// Errors: a slot this node does not provide (named), a negative amount, an amount finer
    /// than its slot's step, `shmem` not below `mem`, a kernel that already holds an
    /// allocation, or [`Error::Insufficient`] for the first slot in allocation order that does
    /// not fit. On any error nothing is taken.
    pub fn allocate(&self, kernel_id: KernelId, request: &ResourceSlot, shmem: Option<u64>) -> Result<Allocation> {
        let (cpu, mem) = self.check_request(request)?;
        let shmem = shmem.filter(|&s| s > 0);
        if let Some(s) = shmem {
            if s >= mem {
                return Err(Error::invalid(
                    "resource_opts.shmem",
                    format!(
                        "{} must be less than the requested memory {} (mem includes shared memory)",
                        BinarySize::new(s),
                        BinarySize::new(mem)
                    ),
                ));
            }
        }
        let mut state = self.lock();
        if state.kernels.contains_key(&kernel_id) {
            return Err(Error::invalid("kernel_id", format!("kernel {kernel_id} already holds an allocation")));
        }
        let mut cores = BTreeMap::new();
        let mut devices = Vec::new();
        for step in &self.steps {
            match *step {
                Step::Plugin(i) => {
                    let mut device =
                        DeviceAllocation { plugin: self.plugins[i].key().to_string(), slots: BTreeMap::new() };
                    for def in &self.plugin_slots[i] {
                        let amount = request.get(&def.name);
                        if amount.is_zero() {
                            continue;
                        }
                        let map = state.devices.get(&def.name).ok_or_else(|| unsupported(&def.name, &self.known))?;
                        device.slots.insert(def.name.clone(), map.plan(amount)?);
                    }
                    if !device.slots.is_empty() {
                        devices.push(device);
                    }
                }
                Step::Cpu => cores = state.cpu.plan(cpu)?,
                Step::Mem => state.mem.check(mem)?,
            }
        }
        let alloc = self.finish(request, cpu, mem, shmem, cores, devices)?;
        state.commit(kernel_id, &alloc)?;
        Ok(alloc)
    }

    /// Validates the request's slots; returns the cpu amount and the memory in bytes.
    fn check_request(&self, request: &ResourceSlot) -> Result<(Decimal, u64)> {
        for (slot, amount) in request.iter() {
            if amount.is_zero() {
                continue;
            }
            let field = || format!("resource_slots.{slot}");
            if amount.is_sign_negative() {
                return Err(Error::invalid(field(), format!("{} is negative", amount.normalize())));
            }
            if self.known.get(slot).is_none() {
                return Err(unsupported(slot, &self.known));
            }
        }
        let cpu = request.get("cpu");
        if cpu <= Decimal::ZERO {
            return Err(Error::invalid("resource_slots.cpu", "required: every kernel needs a positive cpu amount"));
        }
        let mem = request.get("mem");
        let mem = if mem.fract().is_zero() { u64::try_from(mem).ok().filter(|&m| m > 0) } else { None };
        let mem = mem.ok_or_else(|| {
            Error::invalid(
                "resource_slots.mem",
                format!("{}: every kernel needs a positive whole number of bytes", request.get("mem").normalize()),
            )
        })?;
        Ok((cpu, mem))
    }

    /// Builds the allocation from its planned parts, asking the plugins for their container
    /// configuration.
    fn finish(
        &self,
        request: &ResourceSlot,
        cpu: Decimal,
        mem: u64,
        shmem: Option<u64>,
        cores: BTreeMap<u32, Decimal>,
        devices: Vec<DeviceAllocation>,
    ) -> Result<Allocation> {
        let whole = cpu.fract().is_zero() && Decimal::from(cores.len()) == cpu;
        let nano_cpus = if whole {
            None
        } else {
            let nanos = (cpu * Decimal::from(NANOS_PER_CPU)).trunc();
            Some(i64::try_from(nanos).map_err(|_| Error::invalid("resource_slots.cpu", "too large"))?)
        };
        let mut alloc = Allocation {
            slots: request.without_zeros(),
            cpuset: format_cpu_list(&cores.keys().copied().collect::<Vec<_>>()),
            cores,
            nano_cpus,
            memory: mem,
            memory_limit: mem - shmem.unwrap_or(0),
            shm_size: shmem,
            devices,
            env: BTreeMap::new(),
            device_requests: Vec::new(),
            device_nodes: Vec::new(),
        };
        for device in &alloc.devices {
            let plugin = self.plugin(&device.plugin)?;
            let config = plugin.container_config(device)?;
            alloc.env.extend(config.env);
            alloc.device_requests.extend(config.device_requests);
            for node in config.device_nodes {
                if !alloc.device_nodes.contains(&node) {
                    alloc.device_nodes.push(node);
                }
            }
        }
        alloc.env.extend(self.gpu_env(&alloc.devices));
        Ok(alloc)
    }

    fn plugin(&self, key: &str) -> Result<&Arc<dyn AcceleratorPlugin>> {
        self.plugins
            .iter()
            .find(|p| p.key() == key)
            .ok_or_else(|| Error::NotFound { kind: "accelerator plugin", id: key.to_string() })
    }

    /// `GPU_COUNT`/`N_GPUS` (devices attached, `0` without accelerators) and, with devices,
    /// `GPU_TYPE` (the first plugin's key), `GPU_MODEL_NAME`, `GPU_CONFIG` and
    /// `TF_GPU_MEMORY_ALLOC` (per device in container order: its memory times the share of
    /// the device held).
    fn gpu_env(&self, devices: &[DeviceAllocation]) -> BTreeMap<String, String> {
        let mut attached = Vec::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            let Some(device) = devices.iter().find(|d| d.plugin == plugin.key()) else { continue };
            for id in device.device_ids() {
                let capacity: Decimal = self.plugin_slots[i]
                    .iter()
                    .filter(|def| device.slots.contains_key(&def.name))
                    .flat_map(|def| def.per_device.iter().filter(|(d, _)| *d == id).map(|(_, c)| *c))
                    .sum();
                let fraction = if capacity.is_zero() {
                    Decimal::ONE
                } else {
                    (device.amount_of(&id) / capacity).min(Decimal::ONE)
                };
                let info = plugin.devices().iter().find(|d| d.id == id);
                let memory = info.map_or(0, |d| d.memory);
                let memory = u64::try_from((Decimal::from(memory) * fraction).floor()).unwrap_or(memory);
                attached.push((plugin.key().to_string(), info.map(|d| d.model.clone()).unwrap_or_default(), memory));
            }
        }
        // the plugins' order above is arbitrary; put the first plugin in allocation order first
        attached.sort_by_key(|(key, _, _)| {
            self.steps.iter().position(|s| matches!(s, Step::Plugin(i) if self.plugins[*i].key() == key.as_str()))
        });
        let mut env = BTreeMap::new();
        env.insert("GPU_COUNT".to_string(), attached.len().to_string());
        env.insert("N_GPUS".to_string(), attached.len().to_string());
        if let Some((key, model, _)) = attached.first() {
            env.insert("GPU_TYPE".to_string(), key.clone());
            env.insert("GPU_MODEL_NAME".to_string(), model.clone());
            let config: Vec<String> = attached
                .iter()
                .enumerate()
                .map(|(i, (_, _, mem))| format!("{i}:{}", BinarySize::new(*mem).to_short_string()))
                .collect();
            env.insert("GPU_CONFIG".to_string(), config.join(","));
            let tf: Vec<String> =
                attached.iter().enumerate().map(|(i, (_, _, mem))| format!("{i}:{}", mem >> 20)).collect();
            env.insert("TF_GPU_MEMORY_ALLOC".to_string(), tf.join(","));
        }
        env
    }

    /// Gives back what a kernel holds; `None` if it holds nothing (releasing twice is fine).
    pub fn release(&self, kernel_id: &KernelId) -> Option<Allocation> {
        self.lock().release(kernel_id)
    }

    /// Marks what a running container holds, from its stored allocation (after an agent
    /// restart). Refuses, taking nothing, when the allocation is inconsistent (its `slots` do
    /// not add up from its parts, its cpuset or limits do not match), names a core, device or
    /// slot this node does not have, or conflicts with what is already taken. Restoring the
    /// same allocation for the same kernel again is a no-op.
    pub fn restore(&self, kernel_id: KernelId, allocation: &Allocation) -> Result<()> {
        let parts = allocation.parts_total()?;
        if parts != allocation.slots {
            return Err(Error::invalid(
                "allocation.slots",
                format!("{} does not match its cores, memory and devices, which add up to {parts}", allocation.slots),
            ));
        }
        if allocation.cpuset != format_cpu_list(&allocation.core_ids()) {
            return Err(Error::invalid(
                "allocation.cpuset",
                format!("{:?} does not match its cores", allocation.cpuset),
            ));
        }
        if allocation.memory_limit + allocation.shm_size.unwrap_or(0) != allocation.memory {
            return Err(Error::invalid("allocation.memory_limit", "memory_limit + shm_size must equal memory"));
        }
        for device in &allocation.devices {
            for slot in device.slots.keys() {
                if slot.split('.').next() != Some(device.plugin.as_str()) {
                    return Err(Error::invalid(
                        "allocation.devices",
                        format!("slot {slot} does not belong to plugin {}", device.plugin),
                    ));
                }
            }
        }
        let mut state = self.lock();
        if let Some(held) = state.kernels.get(&kernel_id) {
            if held == allocation {
                return Ok(());
            }
            return Err(Error::invalid(
                "kernel_id",
                format!("kernel {kernel_id} already holds a different allocation"),
            ));
        }
        state.commit(kernel_id, allocation)
    }
}

fn unsupported(slot: &str, known: &KnownSlots) -> Error {
    let names: Vec<&str> = known.iter().map(|(n, _)| n).collect();
    Error::invalid(
        format!("resource_slots.{slot}"),
        format!("unsupported resource: this agent provides only {}", names.join(", ")),
    )
}

fn order_steps(order: &[String], plugins: &[Arc<dyn AcceleratorPlugin>]) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut seen = BTreeSet::new();
    for name in order {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid("allocation-order", format!("{name:?} appears twice")));
        }
        match name.as_str() {
            "cpu" => steps.push(Step::Cpu),
            "mem" => steps.push(Step::Mem),
            key => {
                if let Some(i) = plugins.iter().position(|p| p.key() == key) {
                    steps.push(Step::Plugin(i));
                }
            }
        }
    }
    let mut rest: Vec<usize> = (0..plugins.len()).filter(|i| !steps.contains(&Step::Plugin(*i))).collect();
    rest.sort_by(|&a, &b| natural_cmp(plugins[a].key(), plugins[b].key()));
    steps.extend(rest.into_iter().map(Step::Plugin));
    for step in [Step::Cpu, Step::Mem] {
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accelerator::{MockAccelerator, MockConfig, MockSlotKind};
    use bai_core::SlotType;

    const GIB: u64 = 1 << 30;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn req(pairs: &[(&str, &str)]) -> ResourceSlot {
        ResourceSlot::from_pairs(pairs.iter().map(|(k, v)| {
            let v = match v.strip_suffix('g') {
                Some(n) => Decimal::from(n.parse::<u64>().unwrap() * GIB),
                None => d(v),
            };
            (*k, v)
        }))
        .unwrap()
    }

    fn mock(key: &str, n: usize, slot: MockSlotKind) -> Arc<dyn AcceleratorPlugin> {
        let mut config = MockConfig::example_cuda(n, slot);
        config.key = key.to_string();
        Arc::new(MockAccelerator::new(config).unwrap())
    }

    fn node(cores: u32, mem_gib: u64, plugins: Vec<Arc<dyn AcceleratorPlugin>>) -> Allocator {
        let capacity = NodeCapacity::new((0..cores).collect(), Decimal::from(cores), mem_gib * GIB).unwrap();
        Allocator::new(&capacity, plugins, &AllocatorConfig::default()).unwrap()
    }

    #[test]
    fn whole_and_fractional_cpu() {
        let a = node(4, 8, vec![]);
        let k1 = KernelId::new_random();
        let one = a.allocate(k1, &req(&[("cpu", "2"), ("mem", "1g")]), None).unwrap();
        assert_eq!((one.cpuset.as_str(), one.nano_cpus), ("0-1", None));
        assert_eq!((one.memory, one.memory_limit, one.shm_size), (GIB, GIB, None));
        let k2 = KernelId::new_random();
        let two = a.allocate(k2, &req(&[("cpu", "0.5"), ("mem", "1g")]), None).unwrap();
        assert_eq!((two.cpuset.as_str(), two.nano_cpus), ("2", Some(500_000_000)));
        // 1.5 left, on cores 2 (0.5 free) and 3 (1 free): both are pinned, with a CFS limit
        let k3 = KernelId::new_random();
        let three = a.allocate(k3, &req(&[("cpu", "1.5"), ("mem", "1g")]), None).unwrap();
        assert_eq!((three.cpuset.as_str(), three.nano_cpus), ("2-3", Some(1_500_000_000)));
        assert_eq!(a.available().get("cpu"), Decimal::ZERO);
        assert!(matches!(
            a.allocate(KernelId::new_random(), &req(&[("cpu", "0.001"), ("mem", "1g")]), None),
            Err(Error::Insufficient { ref resource, .. }) if resource == "cpu"
        ));
        a.release(&k2);
        let four = a.allocate(KernelId::new_random(), &req(&[("cpu", "0.5"), ("mem", "1g")]), None).unwrap();
        assert_eq!(four.cpuset, "2");
        assert!(a.release(&k1).is_some());
        assert!(a.release(&k1).is_none(), "releasing twice is harmless");
    }

    #[test]
    fn shared_memory_is_part_of_mem() {
        let a = node(2, 4, vec![]);
        let alloc = a.allocate(KernelId::new_random(), &req(&[("cpu", "1"), ("mem", "2g")]), Some(GIB / 2)).unwrap();
        assert_eq!(alloc.memory_limit, 2 * GIB - GIB / 2);
        assert_eq!(alloc.shm_size, Some(GIB / 2));
        assert_eq!(a.occupied().get("mem"), Decimal::from(2 * GIB), "shm is charged inside mem");
        let err = a.allocate(KernelId::new_random(), &req(&[("cpu", "1"), ("mem", "1g")]), Some(GIB)).unwrap_err();
        assert!(err.to_string().contains("resource_opts.shmem"), "{err}");
        let mut spec = ContainerSpec::default();
        spec.env.insert("KEEP".into(), "1".into());
        alloc.apply_to(&mut spec);
        assert_eq!(spec.memory_limit, Some(alloc.memory_limit));
        assert_eq!(spec.shm_size, Some(GIB / 2));
        assert_eq!(spec.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(spec.env.get("KEEP").map(String::as_str), Some("1"));
        assert_eq!(spec.env.get("N_GPUS").map(String::as_str), Some("0"));
    }

    #[test]
    fn bad_requests_name_the_slot() {
        let a = node(2, 4, vec![mock("cuda", 1, MockSlotKind::Device)]);
        let k = KernelId::new_random();
        let err =
            a.allocate(k, &req(&[("cpu", "1"), ("mem", "1g"), ("rocm.device", "1")]), None).unwrap_err().to_string();
        assert!(err.contains("resource_slots.rocm.device") && err.contains("unsupported"), "{err}");
        // an unknown slot at zero is fine
        assert!(a.allocate(k, &req(&[("cpu", "1"), ("mem", "1g"), ("rocm.device", "0")]), None).is_ok());
        let k = KernelId::new_random();
        for (request, field) in [
            (req(&[("mem", "1g")]), "resource_slots.cpu"),
            (req(&[("cpu", "1")]), "resource_slots.mem"),
            (req(&[("cpu", "1"), ("mem", "0.5")]), "resource_slots.mem"),
            (req(&[("cpu", "-1"), ("mem", "1g")]), "resource_slots.cpu"),
            (req(&[("cpu", "0.0005"), ("mem", "1g")]), "resource_slots.cpu"),
            (req(&[("cpu", "1"), ("mem", "1g"), ("cuda.device", "0.5")]), "resource_slots.cuda.device"),
        ] {
            let err = a.allocate(k, &request, None).unwrap_err().to_string();
            assert!(err.contains(field), "{request}: {err}");
        }
        assert_eq!(a.allocations().len(), 1);
    }

    #[test]
    fn failures_roll_back_everything() {
        let a = node(2, 4, vec![mock("cuda", 2, MockSlotKind::Device)]);
        let before = a.available();
        // cuda fits (allocated first), cpu does not
        let err = a
            .allocate(KernelId::new_random(), &req(&[("cpu", "3"), ("mem", "1g"), ("cuda.device", "2")]), None)
            .unwrap_err();
        assert!(matches!(err, Error::Insufficient { ref resource, .. } if resource == "cpu"), "{err}");
        assert_eq!(a.available(), before);
        // cuda and cpu fit, mem does not
        let err = a
            .allocate(KernelId::new_random(), &req(&[("cpu", "2"), ("mem", "5g"), ("cuda.device", "1")]), None)
            .unwrap_err();
        assert!(matches!(err, Error::Insufficient { ref resource, .. } if resource == "mem"), "{err}");
        assert_eq!(a.available(), before);
        assert!(a.allocations().is_empty());
        // and everything is still there to take
        a.allocate(KernelId::new_random(), &req(&[("cpu", "2"), ("mem", "4g"), ("cuda.device", "2")]), None).unwrap();
        assert!(a.available().is_zero());
    }

    #[test]
    fn the_allocation_order_decides_which_shortage_is_reported() {
        let request = req(&[("cpu", "9"), ("mem", "1g"), ("cuda.device", "9")]);
        let a = node(2, 4, vec![mock("cuda", 2, MockSlotKind::Device)]);
        let err = a.allocate(KernelId::new_random(), &request, None).unwrap_err();
        assert!(matches!(err, Error::Insufficient { ref resource, .. } if resource == "cuda.device"), "{err}");

        let capacity = NodeCapacity::new(vec![0, 1], Decimal::from(2), 4 * GIB).unwrap();
        let config = AllocatorConfig { allocation_order: vec!["mem".into(), "cpu".into()] };
        let a = Allocator::new(&capacity, vec![mock("cuda", 2, MockSlotKind::Device)], &config).unwrap();
        assert_eq!(a.steps, vec![Step::Mem, Step::Cpu, Step::Plugin(0)]);
        let err = a.allocate(KernelId::new_random(), &request, None).unwrap_err();
        assert!(matches!(err, Error::Insufficient { ref resource, .. } if resource == "cpu"), "{err}");

        let twice = AllocatorConfig { allocation_order: vec!["cpu".into(), "cpu".into()] };
        assert!(Allocator::new(&capacity, vec![], &twice).is_err());
        let parsed: AllocatorConfig = serde_json::from_str(r#"{"allocation-order": ["tpu", "cpu"]}"#).unwrap();
        assert_eq!(parsed.allocation_order, vec!["tpu", "cpu"]);
    }

    #[test]
    fn gpu_devices_and_env() {
        let a = node(8, 16, vec![mock("cuda", 4, MockSlotKind::Device)]);
        let alloc = a
            .allocate(KernelId::new_random(), &req(&[("cpu", "1"), ("mem", "1g"), ("cuda.device", "2")]), None)
            .unwrap();
        assert_eq!(alloc.devices.len(), 1);
        assert_eq!(alloc.devices[0].device_ids(), vec!["0", "1"]);
        assert_eq!(alloc.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("0,1"));
        assert_eq!(alloc.env.get("GPU_COUNT").map(String::as_str), Some("2"));
        assert_eq!(alloc.env.get("GPU_TYPE").map(String::as_str), Some("cuda"));
        assert_eq!(alloc.env.get("GPU_MODEL_NAME").map(String::as_str), Some("Mock GPU 16GB"));
        assert_eq!(alloc.env.get("GPU_CONFIG").map(String::as_str), Some("0:16g,1:16g"));
        assert_eq!(alloc.env.get("TF_GPU_MEMORY_ALLOC").map(String::as_str), Some("0:16384,1:16384"));
        assert!(alloc.device_requests.is_empty());
        let next = a
            .allocate(KernelId::new_random(), &req(&[("cpu", "1"), ("mem", "1g"), ("cuda.device", "1")]), None)
            .unwrap();
        assert_eq!(next.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("2"));
        assert_eq!(a.available().get("cuda.device"), Decimal::ONE);
        assert_eq!(a.capacity().get("cuda.device"), Decimal::from(4));
        assert_eq!(a.known_slots().get("cuda.device"), Some(SlotType::Count));
    }

    #[test]
    fn fractional_gpu_shares() {
        let a = node(8, 16, vec![mock("cuda", 2, MockSlotKind::Shares)]);
        let r = |s: &str| req(&[("cpu", "1"), ("mem", "1g"), ("cuda.shares", s)]);
        let err = a.allocate(KernelId::new_random(), &r("0.005"), None).unwrap_err().to_string();
        assert!(err.contains("resource_slots.cuda.shares") && err.contains("0.01"), "{err}");

        let half = a.allocate(KernelId::new_random(), &r("0.5"), None).unwrap();
        assert_eq!(half.devices[0].slots["cuda.shares"], BTreeMap::from([("0".to_string(), d("0.5"))]));
        assert_eq!(half.env.get("GPU_CONFIG").map(String::as_str), Some("0:8g"));
        // the least loaded device next
        let quarter = a.allocate(KernelId::new_random(), &r("0.25"), None).unwrap();
        assert_eq!(quarter.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("1"));
        // 1.2 does not fit on one device (0.5 and 0.75 free): spread over both
        let big = a.allocate(KernelId::new_random(), &r("1.2"), None).unwrap();
        let amounts = &big.devices[0].slots["cuda.shares"];
        assert_eq!(amounts.values().copied().sum::<Decimal>(), d("1.2"));
        assert_eq!(amounts.len(), 2);
        assert_eq!(a.available().get("cuda.shares"), d("0.05"));
        assert!(a.allocate(KernelId::new_random(), &r("0.06"), None).is_err());
        assert!(a.allocate(KernelId::new_random(), &r("0.05"), None).is_ok());
        assert!(a.available().get("cuda.shares").is_zero());
    }

    #[test]
    fn restore_after_restart() {
        let a = node(4, 8, vec![mock("cuda", 2, MockSlotKind::Device)]);
        let k = KernelId::new_random();
        let alloc = a.allocate(k, &req(&[("cpu", "1.5"), ("mem", "2g"), ("cuda.device", "1")]), Some(GIB / 4)).unwrap();
        let label = serde_json::to_string(&alloc).unwrap();
        assert!(label.contains(r#""cpu":"1.5""#), "{label}");

        // a new agent: the label brings the allocation back
        let b = node(4, 8, vec![mock("cuda", 2, MockSlotKind::Device)]);
        let stored: Allocation = serde_json::from_str(&label).unwrap();
        assert_eq!(stored, alloc);
        b.restore(k, &stored).unwrap();
        assert_eq!(b.occupied(), a.occupied());
        b.restore(k, &stored).unwrap(); // idempotent
                                        // new allocations avoid what was restored
        let next = b
            .allocate(KernelId::new_random(), &req(&[("cpu", "2"), ("mem", "1g"), ("cuda.device", "1")]), None)
            .unwrap();
        assert!(next.cores.keys().all(|c| !alloc.cores.contains_key(c) || alloc.cores[c] < Decimal::ONE));
        assert_ne!(next.devices[0].device_ids(), alloc.devices[0].device_ids());

        // a second container claiming the same GPU conflicts, and takes nothing
        let before = b.occupied();
        let mut clash = stored.clone();
        clash.cores = BTreeMap::from([(0, d("0.25"))]);
        clash.cpuset = "0".into();
        clash.slots.set("cpu", d("0.25")).unwrap();
        let err = b.restore(KernelId::new_random(), &clash).unwrap_err();
        assert!(err.to_string().contains("cuda.device"), "{err}");
        assert_eq!(b.occupied(), before);
        // the same kernel with a different allocation is refused
        assert!(b.restore(k, &clash).is_err());
    }

    #[test]
    fn restore_refuses_inconsistent_or_foreign_allocations() {
        let a = node(4, 8, vec![mock("cuda", 2, MockSlotKind::Device)]);
        let alloc = a
            .allocate(KernelId::new_random(), &req(&[("cpu", "1"), ("mem", "2g"), ("cuda.device", "1")]), None)
            .unwrap();
        let fresh = || node(4, 8, vec![mock("cuda", 2, MockSlotKind::Device)]);

        let mut bad = alloc.clone();
        bad.slots.set("cpu", Decimal::from(2)).unwrap();
        assert!(fresh().restore(KernelId::new_random(), &bad).unwrap_err().to_string().contains("allocation.slots"));

        let mut bad = alloc.clone();
        bad.cpuset = "0-3".into();
        assert!(fresh().restore(KernelId::new_random(), &bad).is_err());

        let mut bad = alloc.clone();
        bad.memory_limit += 1;
        assert!(fresh().restore(KernelId::new_random(), &bad).is_err());

        // a node without that GPU, or without the plugin at all
        let small = node(4, 8, vec![mock("cuda", 1, MockSlotKind::Device)]);
        let mut bad = alloc.clone();
        let amounts = bad.devices[0].slots.get_mut("cuda.device").unwrap();
        amounts.clear();
        amounts.insert("1".into(), Decimal::ONE);
        assert!(small.restore(KernelId::new_random(), &bad).is_err());
        let plain = node(4, 8, vec![]);
        assert!(plain.restore(KernelId::new_random(), &alloc).unwrap_err().to_string().contains("cuda.device"));
        // a core the node does not have
        let tiny = node(1, 8, vec![mock("cuda", 2, MockSlotKind::Device)]);
        let mut bad = alloc.clone();
        bad.cores = BTreeMap::from([(7, Decimal::ONE)]);
        bad.cpuset = "7".into();
        assert!(tiny.restore(KernelId::new_random(), &bad).is_err());
        assert!(tiny.occupied().is_zero());
    }

    #[test]
    fn concurrent_allocations_never_double_book() {
        for _ in 0..20 {
            race_once();
        }
    }

    /// 32 threads released at once by a barrier, each allocating (and some releasing again).
    fn race_once() {
        use std::sync::Barrier;
        const THREADS: usize = 32;
        let a = node(16, 32, vec![mock("cuda", 6, MockSlotKind::Device)]);
        let barrier = Barrier::new(THREADS);
        let results: Vec<(KernelId, Result<Allocation>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (a, barrier) = (&a, &barrier);
                    s.spawn(move || {
                        let request = match i % 3 {
                            0 => req(&[("cpu", "1"), ("mem", "1g"), ("cuda.device", "1")]),
                            1 => req(&[("cpu", "2"), ("mem", "3g")]),
                            _ => req(&[("cpu", "1"), ("mem", "2g"), ("cuda.device", "2")]),
                        };
                        let kernel = KernelId::new_random();
                        barrier.wait();
                        let result = a.allocate(kernel, &request, None);
                        // some churn: every fourth thread gives its allocation back at once
                        if i % 4 == 0 && result.is_ok() {
                            a.release(&kernel);
                            return (kernel, Err(Error::invalid("test", "released")));
                        }
                        (kernel, result)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let held: Vec<&Allocation> = results.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        assert!(!held.is_empty());
        let mut cores = BTreeSet::new();
        let mut gpus = BTreeSet::new();
        let (mut cpu, mut mem) = (Decimal::ZERO, 0u64);
        for alloc in &held {
            for core in alloc.cores.keys() {
                assert!(cores.insert(*core), "core {core} handed out twice");
            }
            for id in alloc.devices.iter().flat_map(|d| d.device_ids()) {
                assert!(gpus.insert(id.clone()), "GPU {id} handed out twice");
            }
            cpu += alloc.slots.get("cpu");
            mem += alloc.memory;
        }
        assert!(cpu <= Decimal::from(16) && mem <= 32 * GIB && gpus.len() <= 6);
        assert_eq!(a.occupied().get("cpu"), cpu);
        assert_eq!(a.occupied().get("mem"), Decimal::from(mem));
        assert_eq!(a.occupied().get("cuda.device"), Decimal::from(gpus.len()));
        assert_eq!(a.allocations().len(), held.len());
        assert!(!a.available().has_negative());
        for (kernel, _) in &results {
            a.release(kernel);
        }
        assert!(a.occupied().is_zero());
    }

    #[test]
    fn bad_plugin_sets_are_rejected() {
        let capacity = NodeCapacity::new(vec![0], Decimal::ONE, GIB).unwrap();
        let config = AllocatorConfig::default();
        let twice = vec![mock("cuda", 1, MockSlotKind::Device), mock("cuda", 1, MockSlotKind::Shares)];
        assert!(Allocator::new(&capacity, twice, &config).unwrap_err().to_string().contains("two plugins"));
        let fine = vec![mock("cuda", 1, MockSlotKind::Device), mock("rocm", 1, MockSlotKind::Device)];
        let a = Allocator::new(&capacity, fine, &config).unwrap();
        assert_eq!(a.plugins().len(), 2);
        assert_eq!(a.known_slots().get("rocm.device"), Some(SlotType::Count));
        assert_eq!(a.known_slots().get("mem"), Some(SlotType::Bytes));
    }

    #[test]
    fn a_duplicate_kernel_is_refused() {
        let a = node(2, 2, vec![]);
        let k = KernelId::new_random();
        a.allocate(k, &req(&[("cpu", "1"), ("mem", "1g")]), None).unwrap();
        let err = a.allocate(k, &req(&[("cpu", "1"), ("mem", "1g")]), None).unwrap_err();
        assert!(err.to_string().contains("already holds"), "{err}");
        assert_eq!(a.occupied().get("cpu"), Decimal::ONE);
    }
}
