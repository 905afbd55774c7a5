#pragma once
// Hazard pointers (Maged M. Michael, "Hazard Pointers: Safe Memory Reclamation for Lock-Free
// Objects", IEEE TPDS 15(6), 2004).
//
// When to use: a lock-free structure unlinks an object that other threads may still be reading.
// The unlinking thread `retire`s it; it is reclaimed once no thread's hazard pointer names it.
// tidepool protects whole queue segments this way, never individual tasks, and never on a
// worker's deque fast path.
//
// Design:
//   * A domain owns a list of records, one per thread that uses it. A record holds
//     `slots_per_record` hazard pointers and that thread's list of retired objects. Records are
//     never freed before the domain: a thread that exits marks its record free and the next
//     thread to arrive reuses it, retired list included. So H = records × slots_per_record never
//     exceeds what the threads alive at once need.
//   * `retire` appends to the calling thread's list; when the list reaches R = 2·H the thread
//     first adopts the lists that exited threads left in free records, then scans: every object
//     no hazard pointer names is reclaimed. At most H survive a scan, so each scan frees at least
//     R − H = H objects (amortised O(1) per retire).
//   * Bound: at most records × R objects are retired but unreclaimed at any time, whatever the
//     other threads do — a thread that stalls while holding a hazard pointer keeps at most that
//     one object (and its own list) alive. A list may briefly hold more than R after adopting
//     orphans, but adoption moves objects, it never adds any, and every list other than the
//     scanning one holds fewer than R. Epoch-based schemes have no such bound.
//   * Reclaim functions must not use the domain they are called from (they run inside a scan).
//
// Ordering, in one place (each line names the operation it synchronises with):
//   protect:  load src, publish hazard, light fence, reload src. If the reload still sees the
//             object, the object was not yet unlinked when the hazard became visible, so any
//             scan that starts after the unlink sees the hazard (its heavy fence orders its
//             reads of hazards after the unlink).
//   clear:    release store of null: everything the reader did with the object happens-before a
//             scan that reads the null with acquire and then reclaims the object.
//   scan:     heavy fence, then acquire loads of every hazard.
//
// Asymmetric fences: protect runs on every queue operation, a scan once per R retired segments.
// So on x86-64 Linux where membarrier(PRIVATE_EXPEDITED) is available, the light fence is only a
// compiler barrier and the heavy fence is the membarrier call, which makes every running thread of
// the process execute a full barrier: the same store→load ordering as a pair of seq_cst fences,
// paid by the rare side (folly's hazptr does the same). Elsewhere, and under ThreadSanitizer,
// both are seq_cst fences.
//
// If membarrier stops working after start-up (a seccomp filter installed later, ENOMEM), the
// heavy fence falls back to folly's other barrier: it changes the protection of a page this
// process has written, and the kernel's TLB shoot-down interrupts every CPU that runs one of our
// threads (on x86, shoot-downs are inter-processor interrupts, and an interrupt serialises the
// CPU it lands on); a thread that is not running has been switched out, which is a full barrier
// too. So reclamation never stops. Should even that fail, a scan reclaims nothing (and the
// out-of-memory path of retire keeps waiting): hazards read without a barrier are never trusted.
// Asymmetric fences are used only where that fallback exists (x86-64 Linux).
//
// First use without allocation failure: a thread's first holder in a domain allocates (its
// record, its table entry). If that fails, the holder borrows the domain's reserve record,
// allocated with the domain, instead of throwing: protecting never fails for lack of memory, so
// the scheduler's noexcept paths (a worker's first look at a queue) cannot end the process.
// Borrowers of the reserve take turns; each holds it for one holder's lifetime.
//
// Threads and domains may come and go in any order, with one rule: a domain must outlive every
// operation on it (its destructor reclaims everything it still holds).

#include <atomic>   // for std::memory_order
#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint64_t
#include <vector>   // for std::vector

#include "tidepool/detail/atomics.hpp"  // for atomic, atomic_thread_fence, atomic_signal_fence, mutated
#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/sanitizers.hpp"

namespace tidepool::detail {

// Set once, before the first domain exists, by the first domain's constructor.
extern bool asymmetric_fences;

inline void light_fence() noexcept {
  if (mutated(mutant::hazard_protect_without_fence)) return;
  if (asymmetric_fences) {
    detail::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    detail::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

#if defined(TIDEPOOL_FAULT_INJECTION)
// Test builds only (test/meson.build compiles lib/hazard_pointers.cpp into the hazard-pointer
// tests with this switch): deny the heavy fence's membarrier call, or its fallback too, as a
// seccomp filter installed after start-up would; count the fallback barriers made.
struct heavy_fence_faults {
  std::atomic<bool> deny_membarrier{false};
  std::atomic<bool> deny_fallback{false};
  std::atomic<std::uint64_t> fallback_barriers{0};
};
extern heavy_fence_faults heavy_fence_faults_for_testing;
#endif

class hazard_domain {
  struct record;

 public:
  // Two per thread: one structure operation needs one; the second leaves room for an operation
  // that holds two segments at once. Kept small because the bound grows with its square.
  static constexpr std::size_t slots_per_record = 2;

  using reclaim_fn = void (*)(void* object) noexcept;

  hazard_domain();
  // Reclaims every retired object. No thread may be using the domain any more.
  ~hazard_domain();
  hazard_domain(const hazard_domain&) = delete;
  hazard_domain& operator=(const hazard_domain&) = delete;

  // One hazard pointer of the calling thread, held for the holder's lifetime. Cheap to create:
  // after a thread's first use of a domain it is a thread-local hash lookup and a bit flip.
  class holder {
   public:
    // Never throws std::bad_alloc (see "First use without allocation failure" above); throws
    // std::length_error if the thread already holds slots_per_record holders of this domain.
    explicit holder(hazard_domain& domain);
    ~holder();
    holder(const holder&) = delete;
    holder& operator=(const holder&) = delete;

    // Returns the value of `source`, guaranteed not to be reclaimed until this holder protects
    // something else, is reset, or is destroyed. The object must be retired only after it is
    // unreachable from `source` (the usual hazard-pointer precondition).
    template <class T>
    [[nodiscard]] T* protect(const atomic<T*>& source) noexcept {
      T* seen = source.load(std::memory_order_acquire);
      for (;;) {
        // release: if this replaces an earlier hazard, our reads of that earlier object happen
        // before a scan that sees the new value and reclaims the old object.
        hazard_->store(seen, std::memory_order_release);
        // Store→load: the hazard must be visible before we re-check the source. Pairs with the
        // heavy fence at the start of every scan.
        light_fence();
        T* now = source.load(std::memory_order_acquire);
        if (now == seen) return seen;
        seen = now;
      }
    }

    // Stops protecting. The release pairs with the scanner's acquire load of this hazard.
    void reset() noexcept { hazard_->store(nullptr, std::memory_order_release); }

   private:
    void give_back_if_borrowed() noexcept;

    record* record_;
    atomic<const void*>* hazard_;
    unsigned bit_;
    bool temporary_;  // the record is borrowed (see local_record, borrow_reserve): give it back after use
  };

  // Hands `object` over for reclamation once no hazard pointer names it. `object` must already be
  // unreachable for threads that have not protected it yet. Never fails: if the retired list
  // cannot grow, the call waits until nothing protects `object` and reclaims it itself.
  void retire(void* object, reclaim_fn reclaim) noexcept;

  // Scans now instead of waiting for the threshold, adopting what exited threads left behind.
  // Frees everything not currently protected that the calling thread or an exited thread retired.
  void reclaim_unprotected();

  // Retired objects not yet reclaimed, across all threads. Exact when the domain is quiescent.
  [[nodiscard]] std::size_t unreclaimed() const noexcept { return unreclaimed_.load(std::memory_order_relaxed); }

  // The most that `unreclaimed()` can ever reach with the records that exist now: records × R.
  [[nodiscard]] std::size_t unreclaimed_bound() const noexcept;

  // The scan threshold R = 2·H for the records that exist now.
  [[nodiscard]] std::size_t scan_threshold() const noexcept;

  // Records created so far (never more than the threads that used the domain at the same time).
  // The reserve record (see above) is not counted: it holds hazards only while memory is short.
  [[nodiscard]] std::size_t records() const noexcept { return record_count_.load(std::memory_order_acquire); }

#if defined(TIDEPOOL_RELACY)
  // The model's stand-in for a thread's exit: gives the calling simulated thread's record back.
  void model_thread_exit() noexcept;
#endif

 private:
  struct retired_object {
    void* object;
    reclaim_fn reclaim;
  };

  enum record_state : std::uint8_t {
    record_free,      // no thread holds it; its retired list (if any) is an orphan
    record_owned,     // a thread holds it
    record_adopting,  // a scanning thread is moving its orphaned list away, briefly
  };

  struct alignas(cache_line_size) record {
    atomic<const void*> hazards[slots_per_record] = {};
    // `retired`, `scratch` and `used_mask` belong to whichever thread moved `state` away from
    // record_free (acquire), until it moves it back (release).
    atomic<std::uint8_t> state{record_owned};
    // The reserve only: which thread borrows it (null when none). Written by the borrower only,
    // after taking `state` and before giving it back; read relaxed by any thread, which can see
    // its own identity there only if it wrote it itself.
    atomic<const void*> borrower{nullptr};
    unsigned used_mask = 0;
    std::vector<retired_object> retired;
    std::vector<const void*> scratch;  // reused by scans, so a scan does not allocate once warm
    record* next = nullptr;            // immutable after the record is published
  };

  friend class holder;
  friend struct thread_records;
  friend struct thread_exit_handler;

  struct local_record_ref {
    record* r;
    bool temporary;  // borrowed after this thread's exit handler ran: give it back after use
  };
  local_record_ref local_record();
  record& borrow_reserve() noexcept;
  record& acquire_record();
  static void release_record(record& r) noexcept;
  bool scan(record& self) noexcept;
  void adopt_orphans(record& self) noexcept;
  void wait_until_unprotected(const void* object) const noexcept;

  const std::uint64_t id_;  // never reused, unlike the domain's address
  atomic<record*> records_head_{nullptr};
  atomic<std::size_t> record_count_{0};
  atomic<std::size_t> unreclaimed_{0};
  record* reserve_ = nullptr;  // in the list from construction on; never owned, only borrowed
#if defined(TIDEPOOL_RELACY)
  static constexpr std::size_t model_max_threads = 8;
  record* model_records_[model_max_threads] = {};  // the thread-locals, per simulated thread
#endif
};

}  // namespace tidepool::detail
