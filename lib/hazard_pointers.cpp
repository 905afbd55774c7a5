#include "tidepool/detail/hazard_pointers.hpp"

#include <algorithm>      // for std::sort, std::binary_search, std::find_if
#include <mutex>          // for std::mutex, std::lock_guard
#include <stdexcept>      // for std::length_error
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

// The heavy half of the asymmetric fence pair (see hazard_pointers.hpp).
void heavy_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(__linux__)
  if (asymmetric_fences) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#endif
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

// The records this thread holds, one per domain it has used. Its destructor, run at thread
// exit, hands each record (with its retired list) back to its domain.
struct thread_records {
  struct entry {
    std::uint64_t domain_id;
    hazard_domain::record* record;
  };
  std::vector<entry> entries;

  ~thread_records() {
    domain_registry& reg = registry();
    std::lock_guard lock(reg.mutex);
    for (const entry& e : entries) {
      if (reg.live.contains(e.domain_id)) hazard_domain::release_record(*e.record);
    }
  }

  // Drops entries of destroyed domains, so a long-lived thread that meets many short-lived
  // domains (a pool per request, thousands of pools in a test) keeps a short list.
  void prune() {
    domain_registry& reg = registry();
    std::lock_guard lock(reg.mutex);
    std::erase_if(entries, [&](const entry& e) { return !reg.live.contains(e.domain_id); });
  }
};

namespace {
thread_local thread_records this_thread_records;
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

hazard_domain::record& hazard_domain::local_record() {
  std::vector<thread_records::entry>& entries = this_thread_records.entries;
  // Newest first: the domain used most recently is the likeliest to be used again.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->domain_id == id_) return *it->record;
  }
  this_thread_records.prune();
  record& r = acquire_record();
  entries.push_back({id_, &r});
  return r;
}

hazard_domain::record& hazard_domain::acquire_record() {
  for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    bool expected = false;
    // acquire: pairs with the release in release_record, so the retired list the previous
    // holder left is ours to use.
    if (!r->active.load(std::memory_order_relaxed) &&
        r->active.compare_exchange_strong(expected, true, std::memory_order_acquire, std::memory_order_relaxed)) {
      return *r;
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
  r.active.store(false, std::memory_order_release);
}

std::size_t hazard_domain::scan_threshold() const noexcept { return 2 * records() * slots_per_record; }

std::size_t hazard_domain::unreclaimed_bound() const noexcept { return records() * scan_threshold(); }

void hazard_domain::retire(void* object, reclaim_fn reclaim) {
  record& self = local_record();
  self.retired.push_back({object, reclaim});
  unreclaimed_.fetch_add(1, std::memory_order_relaxed);
  if (self.retired.size() >= scan_threshold()) {
    adopt_orphans(self);
    scan(self);
  }
}

void hazard_domain::reclaim_unprotected() {
  record& self = local_record();
  adopt_orphans(self);
  scan(self);
}

void hazard_domain::adopt_orphans(record& self) {
  for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    if (r == &self || r->active.load(std::memory_order_relaxed)) continue;
    bool expected = false;
    if (!r->active.compare_exchange_strong(expected, true, std::memory_order_acquire, std::memory_order_relaxed)) {
      continue;
    }
    self.retired.insert(self.retired.end(), r->retired.begin(), r->retired.end());
    r->retired.clear();
    release_record(*r);
  }
}

void hazard_domain::scan(record& self) {
  // Pairs with the light fence in holder::protect: a hazard published before the reader's
  // re-check of its source is visible to the loads below, for any object unlinked before now.
  heavy_fence();
  std::vector<const void*>& protected_now = self.scratch;
  protected_now.clear();
  for (record* r = records_head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    for (const auto& hazard : r->hazards) {
      // acquire: pairs with holder::reset's release, so the reader is done with the object.
      if (const void* p = hazard.load(std::memory_order_acquire)) protected_now.push_back(p);
    }
  }
  std::sort(protected_now.begin(), protected_now.end());

  std::size_t kept = 0;
  std::size_t reclaimed = 0;
  for (const retired_object& obj : self.retired) {
    if (std::binary_search(protected_now.begin(), protected_now.end(), static_cast<const void*>(obj.object))) {
      self.retired[kept++] = obj;
    } else {
      obj.reclaim(obj.object);
      ++reclaimed;
    }
  }
  self.retired.resize(kept);
  unreclaimed_.fetch_sub(reclaimed, std::memory_order_relaxed);
}

hazard_domain::holder::holder(hazard_domain& domain) {
  record& r = domain.local_record();
  for (unsigned i = 0; i < slots_per_record; ++i) {
    if ((r.used_mask & (1U << i)) == 0) {
      r.used_mask |= 1U << i;
      hazard_ = &r.hazards[i];
      used_mask_ = &r.used_mask;
      bit_ = 1U << i;
      return;
    }
  }
  throw std::length_error("hazard_domain: a thread holds more hazard pointers than slots_per_record");
}

hazard_domain::holder::~holder() {
  reset();
  *used_mask_ &= ~bit_;
}

}  // namespace tidepool::detail
