#pragma once
// Chase–Lev work-stealing deque with a fixed capacity.
//
// When to use: one per worker. The owning worker pushes and pops at the bottom (LIFO, cache-warm
// work first); any other thread steals from the top (FIFO, the oldest and usually largest work).
//
// Design: Chase & Lev (SPAA 2005) with the C11 memory orders proven correct by Lê, Pop, Cohen and
// Zappa Nardelli, "Correct and Efficient Work-Stealing for Weak Memory Models" (PPoPP 2013).
// Differences from the paper, each for a reason:
//   * The ring never grows. `push` reports "full" and the scheduler sends the overflow to the
//     global queue instead (as Go, Tokio and Taskflow do with their local queues). So an old ring
//     never has to be kept alive for late thieves, and there is no reclamation problem at all.
//   * Every slot is cleared when its item leaves: `pop` stores null into its own slot, a winning
//     thief compare-exchanges its slot from the item to null. The deque therefore never refers to
//     an item that has been handed out, which is the scheduler's "no retention" promise.
//   * `steal` tells a lost race apart from an empty deque, so a searching worker can retry a
//     victim that is merely contended instead of moving on as if it were empty.
//
// Indices are signed 64-bit: `pop` decrements bottom before it looks at top, and at bottom == 0
// the transient value -1 must compare below top. At one push per nanosecond they overflow after
// 292 years.
//
// Memory usage: capacity pointers plus three cache lines of indices. Nothing is allocated after
// construction.

#include <atomic>     // for std::memory_order
#include <bit>        // for std::has_single_bit
#include <cstddef>    // for std::size_t
#include <cstdint>    // for std::int64_t
#include <memory>     // for std::unique_ptr
#include <stdexcept>  // for std::invalid_argument

#include "tidepool/detail/atomics.hpp"  // for atomic, atomic_thread_fence, mutated
#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/sanitizers.hpp"

namespace tidepool::detail {

enum class steal_status {
  success,    // the item is yours
  empty,      // there was nothing to steal when we looked
  lost_race,  // there was an item, but the owner or another thief took it first: worth a retry
};

template <class T>
struct steal_result {
  steal_status status;
  T* item;  // non-null exactly when status == success
};

// `Separation` is the alignment of each independently written index. It is a parameter only so
// that perf/ can measure what keeping owner and thieves on separate cache lines is worth; the
// scheduler always uses the default.
template <class T, std::size_t Separation = cache_line_size>
class chase_lev_deque {
  static constexpr auto relaxed = std::memory_order_relaxed;
  static constexpr auto acquire = std::memory_order_acquire;
  static constexpr auto release = std::memory_order_release;
  static constexpr auto seq_cst = std::memory_order_seq_cst;

  // ThreadSanitizer does not model std::atomic_thread_fence: to it, a release fence followed by a
  // relaxed store creates no happens-before edge, and it would report the thief's use of the item
  // as a race. Under TSan only, the store or load each fence orders carries the ordering itself.
  static constexpr auto publish_order = thread_sanitizer ? release : relaxed;

 public:
  static constexpr std::size_t default_capacity = 256;

  explicit chase_lev_deque(std::size_t capacity = default_capacity)
      : slots_(make_slots(capacity)), mask_(static_cast<std::int64_t>(capacity) - 1) {}

  chase_lev_deque(const chase_lev_deque&) = delete;
  chase_lev_deque& operator=(const chase_lev_deque&) = delete;

  [[nodiscard]] std::size_t capacity() const noexcept { return static_cast<std::size_t>(mask_) + 1; }

  // Owner only. Returns false, and leaves the deque unchanged, when it holds `capacity()` items.
  // Everything the owner wrote before `push` is visible to the thread that steals `item`.
  // Precondition: `item` is not in this deque already and is not held by a thief that has not
  // returned it yet (the clearing in `steal` relies on a pointer being in one place at a time).
  [[nodiscard]] bool push(T* item) noexcept {
    const std::int64_t b = bottom_.value.load(relaxed);
    // acquire: pairs with the thieves' seq_cst CAS on top, so the slot we are about to reuse is
    // really free (its thief has finished reading it) before we overwrite it.
    const std::int64_t t = top_.value.load(acquire);
    if (b - t > mask_) return false;
    slots_[b & mask_].store(item, relaxed);
    // release fence: the slot write (and everything that built *item) happens-before any thief
    // that reads the new bottom with acquire.
    if (!mutated(mutant::deque_push_relaxed_publish)) detail::atomic_thread_fence(release);
    bottom_.value.store(b + 1, publish_order);
    return true;
  }

  // Owner only. Takes the most recently pushed item, or returns null when the deque is empty.
  [[nodiscard]] T* pop() noexcept {
    const std::int64_t b = bottom_.value.load(relaxed) - 1;
    bottom_.value.store(b, relaxed);
    // seq_cst fence: the store of bottom above and the load of top below must not be reordered
    // (store→load), or owner and a thief could both take the last item. Thieves have the matching
    // seq_cst fence between their load of top and their load of bottom.
    if (!mutated(mutant::deque_pop_without_fence)) detail::atomic_thread_fence(seq_cst);
    std::int64_t t = top_.value.load(thread_sanitizer ? seq_cst : relaxed);
    if (t > b) {  // was empty: restore bottom
      bottom_.value.store(b + 1, relaxed);
      return nullptr;
    }
    atomic<T*>& slot = slots_[b & mask_];
    T* item = slot.load(relaxed);
    if (t == b) {
      // The last item: thieves may be after it too. Whoever moves top from t to t+1 gets it.
      const bool won = top_.value.compare_exchange_strong(t, t + 1, seq_cst, relaxed);
      bottom_.value.store(b + 1, relaxed);
      if (!won) return nullptr;  // the winning thief clears the slot
    }
    // No thief can take index b any more (top > b, or b > top so thieves stop below it), so the
    // owner is the slot's only writer.
    slot.store(nullptr, relaxed);
    return item;
  }

  // Any thread. Takes the oldest item.
  [[nodiscard]] steal_result<T> steal() noexcept {
    // acquire on top: pairs with other thieves' CAS, so if we see their increment we also see
    // that their slot was read before it could be refilled.
    std::int64_t t = top_.value.load(acquire);
    // seq_cst fence: orders the load of top before the load of bottom, against the owner's
    // store of bottom then load of top in `pop` (the paper's store→load pair).
    detail::atomic_thread_fence(seq_cst);
    // acquire: pairs with the owner's release fence in `push`; the slot and the item are visible.
    const std::int64_t b = bottom_.value.load(thread_sanitizer ? seq_cst : acquire);
    if (t >= b) return {steal_status::empty, nullptr};

    atomic<T*>& slot = slots_[t & mask_];
    // The paper reads the slot with consume; we use acquire, which every compiler emits anyway.
    // The value may be stale if we lose the CAS below; it is then discarded, never used.
    T* item = slot.load(acquire);
    if (mutated(mutant::deque_steal_without_cas)) {
      top_.value.store(t + 1, seq_cst);
    } else if (!top_.value.compare_exchange_strong(t, t + 1, seq_cst, relaxed)) {
      return {steal_status::lost_race, nullptr};
    }
    // Clear the slot we won. This is still a write to a slot we no longer own: the owner may
    // already have refilled it (the ring wrapped once our CAS freed the index). So it is a CAS
    // against our own item, which fails harmlessly on a refill; a refill cannot hold the same
    // pointer, by push's precondition.
    T* still_ours = item;  // compare_exchange overwrites its first argument on failure
    slot.compare_exchange_strong(still_ours, nullptr, relaxed, relaxed);
    return {steal_status::success, item};
  }

  // Any thread. Exact when the deque is quiescent; otherwise a snapshot that may be stale.
  [[nodiscard]] std::size_t size_estimate() const noexcept {
    const std::int64_t b = bottom_.value.load(relaxed);
    const std::int64_t t = top_.value.load(relaxed);
    return b > t ? static_cast<std::size_t>(b - t) : 0;
  }

  [[nodiscard]] bool empty_estimate() const noexcept { return size_estimate() == 0; }

  // Test hook: how many slots still hold a pointer. Call only when no thread uses the deque.
  [[nodiscard]] std::size_t occupied_slots_for_testing() const noexcept {
    std::size_t occupied = 0;
    for (std::int64_t i = 0; i <= mask_; ++i) occupied += slots_[i].load(relaxed) != nullptr;
    return occupied;
  }

 private:
  static std::unique_ptr<atomic<T*>[]> make_slots(std::size_t capacity) {
    if (capacity < 2 || !std::has_single_bit(capacity)) {
      throw std::invalid_argument("chase_lev_deque: capacity must be a power of two >= 2");
    }
    auto slots = std::make_unique<atomic<T*>[]>(capacity);
    for (std::size_t i = 0; i < capacity; ++i) slots[i].store(nullptr, relaxed);
    return slots;
  }

  struct alignas(Separation) index {
    atomic<std::int64_t> value{0};
  };

  // Written by thieves (CAS) and, for the last item, by the owner.
  index top_;
  // Written only by the owner; read by thieves. Its own line, so thieves' CASes on top do not
  // invalidate the line the owner touches on every push and pop.
  index bottom_;
  // Read-only after construction; shares no line with either index.
  alignas(Separation) const std::unique_ptr<atomic<T*>[]> slots_;
  const std::int64_t mask_;
};

}  // namespace tidepool::detail
