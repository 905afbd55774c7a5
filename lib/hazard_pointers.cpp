#include "tidepool/detail/hazard_pointers.hpp"

#include "tidepool/detail/cpu_pause.hpp"

#include <algorithm>      // for std::sort, std::binary_search
#include <bit>            // for std::bit_ceil
#include <mutex>          // for std::mutex, std::lock_guard, std::once_flag, std::call_once
#include <new>            // for std::bad_alloc
#include <stdexcept>      // for std::length_error
#include <thread>         // for std::this_thread::yield
#include <unordered_set>  // for std::unordered_set

#if defined(__linux__) && defined(__x86_64__) && !defined(TIDEPOOL_RELACY)
#define TIDEPOOL_ASYMMETRIC_FENCES 1
#include <linux/membarrier.h>  // for MEMBARRIER_CMD_*
#include <sys/mman.h>          // for mmap, mprotect
#include <sys/syscall.h>       // for SYS_membarrier
#include <unistd.h>            // for syscall, sysconf
#endif

namespace tidepool::detail {

bool asymmetric_fences = false;

#if defined(TIDEPOOL_FAULT_INJECTION)
heavy_fence_faults heavy_fence_faults_for_testing;
#endif

namespace {

#if !defined(TIDEPOOL_RELACY)
// Which domains are alive. A thread that exits must not touch the record of a domain that has
// been destroyed, and a domain may be destroyed while threads that used it live on (and the
// reverse). Both sides meet here, under one mutex, which is taken only when a thread's table of
// domains grows, when it exits, and when a domain is created or destroyed: never per operation.
struct domain_registry {
  std::mutex mutex;
  std::unordered_set<std::uint64_t> live;
  std::uint64_t next_id = 1;
};

domain_registry& registry() {
  // Deliberately never destroyed: thread-exit handlers of detached threads may still run after
  // static destructors have started.
  static auto* instance = new domain_registry;
  return *instance;
}
#endif

#if defined(TIDEPOOL_ASYMMETRIC_FENCES)
// The page the fallback barrier changes the protection of; mapped when fences are chosen.
void* barrier_page = nullptr;
// Serialises fallback barriers: two at once could write the page while the other made it read-only.
std::atomic<bool> barrier_page_busy{false};

bool expedited_membarrier() noexcept {
#if defined(TIDEPOOL_FAULT_INJECTION)
  if (heavy_fence_faults_for_testing.deny_membarrier.load(std::memory_order_relaxed)) return false;
#endif
  return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

// folly's mprotect barrier (folly/synchronization/AsymmetricMemoryBarrier.cpp): make the page
// writable and dirty it, then make it read-only. Before the second mprotect returns, the kernel
// must flush the page's old, writable translation from every CPU that may cache it: every CPU
// in this process's address-space mask, which includes each CPU running one of our threads. On
// x86 it does that with an inter-processor interrupt, which serialises the interrupted CPU: a
// full barrier there. (A kernel that flushed by hardware broadcast instead, without interrupts,
// would not give this guarantee; membarrier stays the first choice for that reason.)
bool page_protection_barrier() noexcept {
#if defined(TIDEPOOL_FAULT_INJECTION)
  if (heavy_fence_faults_for_testing.deny_fallback.load(std::memory_order_relaxed)) return false;
  heavy_fence_faults_for_testing.fallback_barriers.fetch_add(1, std::memory_order_relaxed);
#endif
  // acquire/release: the page's protection changes of one barrier happen before the next one's.
  while (barrier_page_busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
  const long page_size = sysconf(_SC_PAGESIZE);
  bool ok = mprotect(barrier_page, static_cast<std::size_t>(page_size), PROT_READ | PROT_WRITE) == 0;
  if (ok) {
    *static_cast<volatile char*>(barrier_page) = 1;
    ok = mprotect(barrier_page, static_cast<std::size_t>(page_size), PROT_READ) == 0;
  }
  barrier_page_busy.store(false, std::memory_order_release);
  return ok;
}
#endif

// The heavy half of the asymmetric fence pair (see hazard_pointers.hpp). Returns false only if
// no barrier could be made; the caller must then treat every hazard as unknown.
bool heavy_fence() noexcept {
  if (mutated(mutant::hazard_scan_without_fence)) return true;  // a failed barrier, ignored
  detail::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(TIDEPOOL_ASYMMETRIC_FENCES)
  if (asymmetric_fences) return expedited_membarrier() || page_protection_barrier();
#endif
  return true;
}

#if !defined(TIDEPOOL_RELACY)
void choose_fences() noexcept {
#if defined(TIDEPOOL_ASYMMETRIC_FENCES)
  if constexpr (!thread_sanitizer) {
    // Only with the fallback at hand: if the page cannot be mapped, stay symmetric.
    void* page = mmap(nullptr, static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), PROT_READ,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return;
    barrier_page = page;
    // Registration is per process and must precede the first expedited call.
    asymmetric_fences = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }
#endif
}

std::uint64_t register_domain() {
  static std::once_flag fences_chosen;
  std::call_once(fences_chosen, choose_fences);
  domain_registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  const std::uint64_t id = reg.next_id++;
  reg.live.insert(id);
  return id;
}

void unregister_domain(std::uint64_t id) noexcept {
  domain_registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  reg.live.erase(id);
}
#else
// The model runs in one OS thread and keeps symmetric fences (Relacy cannot model membarrier).
std::uint64_t model_next_domain_id = 1;
std::uint64_t register_domain() { return model_next_domain_id++; }
void unregister_domain(std::uint64_t) noexcept {}
#endif

}  // namespace

#if !defined(TIDEPOOL_RELACY)
// The records this thread holds, one per domain it has used: an open-addressing hash table keyed
// by domain id, so that finding this thread's record is O(1) however many domains it has met (a
// worker meets one per live subpool). Owned by the thread: no synchronisation.
struct thread_records {
  struct entry {
    std::uint64_t domain_id;  // 0: an empty slot (ids start at 1)
    hazard_domain::record* record;
  };
  std::vector<entry> table;  // a power of two in size, at most half full; empty until first use
  std::size_t used = 0;

  static std::size_t home(std::uint64_t id, std::size_t mask) noexcept {
    // Fibonacci hashing: consecutive ids (the usual case) land far apart.
    return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
  }

  [[nodiscard]] hazard_domain::record* find(std::uint64_t id) const noexcept {
    if (table.empty()) return nullptr;
    const std::size_t mask = table.size() - 1;
    for (std::size_t i = home(id, mask);; i = (i + 1) & mask) {
      if (table[i].domain_id == id) return table[i].record;
      if (table[i].domain_id == 0) return nullptr;
    }
  }

  // Makes room for one more entry, so that `insert` cannot fail. On growth, first drops the
  // entries of destroyed domains, so a long-lived thread that meets many short-lived domains (a
  // pool per request) keeps a small table. Throws std::bad_alloc with the table unchanged.
  void reserve_one() {
    if (2 * (used + 1) <= table.size()) return;
    std::vector<entry> live;
    live.reserve(used);
    {
      domain_registry& reg = registry();
      std::lock_guard lock(reg.mutex);
      for (const entry& e : table) {
        if (e.domain_id != 0 && reg.live.contains(e.domain_id)) live.push_back(e);
      }
    }
    std::vector<entry> grown(std::bit_ceil(4 * (live.size() + 1)));
    table.swap(grown);
    used = 0;
    for (const entry& e : live) insert(e.domain_id, e.record);
  }

  void insert(std::uint64_t id, hazard_domain::record* r) noexcept {
    const std::size_t mask = table.size() - 1;
    std::size_t i = home(id, mask);
    while (table[i].domain_id != 0) i = (i + 1) & mask;
    table[i] = {id, r};
    ++used;
  }
};

namespace {

// Trivially destructible, so these stay readable for the whole life of the thread, even from
// thread_local or static destructors that run after this thread's exit handler.
thread_local thread_records* this_thread_records = nullptr;
thread_local bool this_thread_exited = false;

// Tells threads apart for the reserve record: the address of a thread-local is unique among the
// threads alive at once.
const void* this_thread_identity() noexcept { return &this_thread_exited; }

}  // namespace

// At thread exit, hands each record (with its retired list) back to its domain. Constructed on
// the thread's first use of any domain, so objects that start using domains later are destroyed
// before it; objects destroyed after it still work, through borrowed records.
struct thread_exit_handler {
  ~thread_exit_handler() {
    thread_records* records = this_thread_records;
    if (records == nullptr) return;
    {
      domain_registry& reg = registry();
      std::lock_guard lock(reg.mutex);
      for (const thread_records::entry& e : records->table) {
        if (e.domain_id != 0 && reg.live.contains(e.domain_id)) hazard_domain::release_record(*e.record);
      }
    }
    this_thread_records = nullptr;
    this_thread_exited = true;
    delete records;
  }
};
namespace {
thread_local thread_exit_handler this_thread_exit_handler;

}  // namespace
#else
namespace {
const void* this_thread_identity() noexcept {
  return reinterpret_cast<const void*>(static_cast<std::uintptr_t>(rl::thread_index()) + 1);
}
}  // namespace
#endif

hazard_domain::hazard_domain() : id_(register_domain()) {
  try {
    reserve_ = new record;
  } catch (...) {
    unregister_domain(id_);
    throw;
  }
  reserve_->state.store(record_free, std::memory_order_relaxed);
  // release: scanners that reach the reserve through the list see it constructed (as for any
  // record, see acquire_record); nobody else can see the domain yet.
  records_head_.store(reserve_, std::memory_order_release);
}

hazard_domain::~hazard_domain() {
  // After this, no exiting thread will release a record of ours: we may free them.
  unregister_domain(id_);
  record* r = records_head_.load(std::memory_order_acquire);
  while (r != nullptr) {
    for (const retired_object& obj : r->retired) obj.reclaim(obj.object);
    record* next = r->next;
    delete r;
    r = next;
  }
}

#if !defined(TIDEPOOL_RELACY)
hazard_domain::local_record_ref hazard_domain::local_record() {
  thread_records* records = this_thread_records;
  if (records != nullptr) {
    if (record* r = records->find(id_)) return {r, false};
  } else {
    // After this thread's exit handler ran, a record is borrowed per use and given back at once.
    if (this_thread_exited) return {&acquire_record(), true};
    records = new thread_records;
    this_thread_records = records;
    static_cast<void>(&this_thread_exit_handler);  // first use registers its destructor
  }
  records->reserve_one();  // so that the insert below cannot fail and leak a record
  record& r = acquire_record();
  records->insert(id_, &r);
  return {&r, false};
}
#else
hazard_domain::local_record_ref hazard_domain::local_record() {
  record*& mine = model_records_[rl::thread_index()];
  if (mine == nullptr) mine = &acquire_record();
  return {mine, false};
}

void hazard_domain::model_thread_exit() noexcept {
  record*& mine = model_records_[rl::thread_index()];
  if (mine != nullptr) release_record(*mine);
  mine = nullptr;
}
#endif

hazard_domain::record& hazard_domain::borrow_reserve() noexcept {
  record& r = *reserve_;
  // This thread borrows it already (a second holder): share it, slot by slot.
  if (r.borrower.load(std::memory_order_relaxed) == this_thread_identity()) return r;
  for (;;) {
    std::uint8_t expected = record_free;
    // acquire: pairs with the release in release_record: the previous borrower is done with it.
    if (r.state.compare_exchange_weak(expected, record_owned, std::memory_order_acquire, std::memory_order_relaxed)) {
      break;
    }
    std::this_thread::yield();  // another thread borrows it for one holder's lifetime
  }
  r.borrower.store(this_thread_identity(), std::memory_order_relaxed);
  return r;
}

hazard_domain::record& hazard_domain::acquire_record() {
  for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    if (r == reserve_) continue;  // only ever borrowed
    for (;;) {
      std::uint8_t state = r->state.load(std::memory_order_relaxed);
      // An adoption takes a few hundred nanoseconds: wait for it rather than allocate a record
      // that would raise H (and the bound) for the domain's whole life.
      while (state == record_adopting) {
        cpu_pause();
        state = r->state.load(std::memory_order_relaxed);
      }
      if (state != record_free) break;
      // acquire: pairs with the release in release_record, so the retired list the previous
      // holder left is ours to use.
      if (r->state.compare_exchange_weak(state, record_owned, std::memory_order_acquire, std::memory_order_relaxed)) {
        return *r;
      }
    }
  }
  auto* fresh = new record;
  record* head = records_head_.load(std::memory_order_relaxed);
  do {
    fresh->next = head;
    // release: scanners that reach `fresh` through the list see it fully constructed.
  } while (!records_head_.compare_exchange_weak(head, fresh, std::memory_order_release, std::memory_order_relaxed));
  record_count_.fetch_add(1, std::memory_order_release);
  return *fresh;
}

void hazard_domain::release_record(record& r) noexcept {
  // release: the retired list (and the cleared hazards) are handed to the next holder.
  r.state.store(record_free, std::memory_order_release);
}

std::size_t hazard_domain::scan_threshold() const noexcept { return 2 * records() * slots_per_record; }

std::size_t hazard_domain::unreclaimed_bound() const noexcept { return records() * scan_threshold(); }

void hazard_domain::retire(void* object, reclaim_fn reclaim) noexcept {
  local_record_ref self{};
  try {
    self = local_record();
    self.r->retired.push_back({object, reclaim});
  } catch (...) {  // out of memory: reclaim this one object ourselves, as soon as it is safe
    if (self.r != nullptr && self.temporary) release_record(*self.r);
    wait_until_unprotected(object);
    reclaim(object);
    return;
  }
  unreclaimed_.fetch_add(1, std::memory_order_relaxed);
  if (self.temporary || self.r->retired.size() >= scan_threshold()) {
    adopt_orphans(*self.r);
    scan(*self.r);
  }
  if (self.temporary) release_record(*self.r);
}

void hazard_domain::wait_until_unprotected(const void* object) const noexcept {
  for (;;) {
    // Hazards read without a barrier prove nothing (see scan): only a barrier that worked lets
    // us conclude that nobody protects `object`.
    if (!heavy_fence()) {
      std::this_thread::yield();
      continue;
    }
    bool is_protected = false;
    for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
      for (const auto& hazard : r->hazards) is_protected |= hazard.load(std::memory_order_acquire) == object;
    }
    if (!is_protected) return;
    std::this_thread::yield();
  }
}

void hazard_domain::reclaim_unprotected() {
  const local_record_ref self = local_record();
  adopt_orphans(*self.r);
  scan(*self.r);
  if (self.temporary) release_record(*self.r);
}

void hazard_domain::adopt_orphans(record& self) noexcept {
  for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    if (r == &self || r == reserve_ || r->state.load(std::memory_order_relaxed) != record_free) continue;
    std::uint8_t expected = record_free;
    if (!r->state.compare_exchange_strong(expected, record_adopting, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
      continue;
    }
    try {
      self.retired.insert(self.retired.end(), r->retired.begin(), r->retired.end());
      r->retired.clear();
    } catch (...) {  // out of memory: leave the orphans where they are, for a later scan
    }
    release_record(*r);
  }
}

bool hazard_domain::scan(record& self) noexcept {
  // Pairs with the light fence in holder::protect: a hazard published before the reader's
  // re-check of its source is visible to the loads below, for any object unlinked before now.
  // If no barrier could be made, readers' hazards may be invisible: reclaim nothing now.
  if (!heavy_fence()) return false;
  std::vector<const void*>& protected_now = self.scratch;
  protected_now.clear();
  try {
    for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
      for (const auto& hazard : r->hazards) {
        // acquire: pairs with holder::reset's release, so the reader is done with the object.
        if (const void* p = hazard.load(std::memory_order_acquire)) protected_now.push_back(p);
      }
    }
  } catch (...) {  // out of memory: try again at the next scan
    return false;
  }
  std::sort(protected_now.begin(), protected_now.end());

  std::size_t kept = 0;
  std::size_t reclaimed = 0;
  for (std::size_t i = 0; i < self.retired.size(); ++i) {
    const retired_object obj = self.retired[i];
    if (std::binary_search(protected_now.begin(), protected_now.end(), static_cast<const void*>(obj.object))) {
      self.retired[kept++] = obj;
    } else {
      obj.reclaim(obj.object);
      ++reclaimed;
    }
  }
  self.retired.resize(kept);
  unreclaimed_.fetch_sub(reclaimed, std::memory_order_relaxed);
  return true;
}

hazard_domain::holder::holder(hazard_domain& domain) {
  local_record_ref ref{};
  try {
    ref = domain.local_record();
  } catch (...) {  // out of memory on this thread's first use of the domain: borrow the reserve
    ref = {&domain.borrow_reserve(), true};
  }
  record_ = ref.r;
  temporary_ = ref.temporary;
  for (unsigned i = 0; i < slots_per_record; ++i) {
    if ((record_->used_mask & (1U << i)) == 0) {
      record_->used_mask |= 1U << i;
      hazard_ = &record_->hazards[i];
      bit_ = 1U << i;
      return;
    }
  }
  give_back_if_borrowed();
  throw std::length_error("hazard_domain: a thread holds more hazard pointers than slots_per_record");
}

hazard_domain::holder::~holder() {
  reset();
  record_->used_mask &= ~bit_;
  give_back_if_borrowed();
}

void hazard_domain::holder::give_back_if_borrowed() noexcept {
  // A borrowed record may serve several holders of this thread at once (the reserve does): the
  // last one gives it back.
  if (!temporary_ || record_->used_mask != 0) return;
  record_->borrower.store(nullptr, std::memory_order_relaxed);
  release_record(*record_);
}

}  // namespace tidepool::detail
