#include "tidepool/detail/hazard_pointers.hpp"

#include "tidepool/detail/cpu_pause.hpp"

#include <algorithm>      // for std::sort, std::binary_search, std::find_if
#include <mutex>          // for std::mutex, std::lock_guard
#include <stdexcept>      // for std::length_error
#include <thread>         // for std::this_thread::yield
#include <unordered_set>  // for std::unordered_set

#if defined(__linux__)
#include <linux/membarrier.h>  // for MEMBARRIER_CMD_*
#include <sys/syscall.h>       // for SYS_membarrier
#include <unistd.h>            // for syscall
#endif

namespace tidepool::detail {

bool asymmetric_fences = false;

namespace {

// Which domains are alive. A thread that exits must not touch the record of a domain that has
// been destroyed, and a domain may be destroyed while threads that used it live on (and the
// reverse). Both sides meet here, under one mutex, which is taken only when a thread first uses a
// domain, when it exits, and when a domain is created or destroyed: never per operation.
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

// The heavy half of the asymmetric fence pair (see hazard_pointers.hpp). Returns false if the
// membarrier call failed (it can: ENOMEM, or a seccomp filter installed after registration); the
// caller must then treat every hazard as unknown.
bool heavy_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(__linux__)
  if (asymmetric_fences) return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
  return true;
}

void choose_fences() noexcept {
#if defined(__linux__)
  if constexpr (!thread_sanitizer) {
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

}  // namespace

// The records this thread holds, one per domain it has used.
struct thread_records {
  struct entry {
    std::uint64_t domain_id;
    hazard_domain::record* record;
  };
  std::vector<entry> entries;

  // Drops entries of destroyed domains, so a long-lived thread that meets many short-lived
  // domains (a pool per request, thousands of pools in a test) keeps a short list.
  void prune() {
    domain_registry& reg = registry();
    std::lock_guard lock(reg.mutex);
    std::erase_if(entries, [&](const entry& e) { return !reg.live.contains(e.domain_id); });
  }
};

namespace {

// Trivially destructible, so these stay readable for the whole life of the thread, even from
// thread_local or static destructors that run after this thread's exit handler.
thread_local thread_records* this_thread_records = nullptr;
thread_local bool this_thread_exited = false;

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
      for (const thread_records::entry& e : records->entries) {
        if (reg.live.contains(e.domain_id)) hazard_domain::release_record(*e.record);
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

hazard_domain::hazard_domain() : id_(register_domain()) {}

hazard_domain::~hazard_domain() {
  {
    // After this, no exiting thread will release a record of ours: we may free them.
    domain_registry& reg = registry();
    std::lock_guard lock(reg.mutex);
    reg.live.erase(id_);
  }
  record* r = records_head_.load(std::memory_order_acquire);
  while (r != nullptr) {
    for (const retired_object& obj : r->retired) obj.reclaim(obj.object);
    record* next = r->next;
    delete r;
    r = next;
  }
}

hazard_domain::local_record_ref hazard_domain::local_record() {
  thread_records* records = this_thread_records;
  if (records == nullptr) {
    // After this thread's exit handler ran, a record is borrowed per use and given back at once.
    if (this_thread_exited) return {&acquire_record(), true};
    records = new thread_records;
    this_thread_records = records;
    static_cast<void>(&this_thread_exit_handler);  // first use registers its destructor
  }
  std::vector<thread_records::entry>& entries = records->entries;
  // Newest first: the domain used most recently is the likeliest to be used again.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->domain_id == id_) return {it->record, false};
  }
  records->prune();
  entries.reserve(entries.size() + 1);  // so that the push_back below cannot throw and leak a record
  record& r = acquire_record();
  entries.push_back({id_, &r});
  return {&r, false};
}

hazard_domain::record& hazard_domain::acquire_record() {
  for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
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
    heavy_fence();
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
    if (r == &self || r->state.load(std::memory_order_relaxed) != record_free) continue;
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
  // If the heavy fence is unavailable, readers' hazards may be invisible: reclaim nothing.
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
  const local_record_ref ref = domain.local_record();
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
  if (temporary_) release_record(*record_);
  throw std::length_error("hazard_domain: a thread holds more hazard pointers than slots_per_record");
}

hazard_domain::holder::~holder() {
  reset();
  record_->used_mask &= ~bit_;
  if (temporary_) release_record(*record_);
}

}  // namespace tidepool::detail
