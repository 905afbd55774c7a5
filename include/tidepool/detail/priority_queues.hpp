#pragma once
// The pool's queue of submitted tasks: one FIFO global queue per priority level, and the rule by
// which a worker picks the level it serves next. `Queue` is the pool's global queue type
// (lib/global_queue.hpp: segmented_queue<task_node> or the one perf/ swaps in); test/relacy/ runs
// this header over a small segmented queue.
//
// Why one queue per level rather than one sorted structure: each level stays the proven FIFO of
// segmented_queue (or the queue perf/ swaps in), so order within a level, exactly-once delivery
// and the hazard-pointer bound carry over unchanged, and a pool that never uses a level other
// than `normal` pays one relaxed load per decision for the other two (their `in_use` flags).

#include <atomic>   // for std::memory_order
#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint32_t

#include "tidepool/detail/atomics.hpp"  // for atomic, mutated
#include "tidepool/detail/cache_line.hpp"
#include "tidepool/priority.hpp"

namespace tidepool::detail {

inline constexpr unsigned level_of(priority p) noexcept { return static_cast<unsigned>(p); }
inline constexpr unsigned normal_level = level_of(priority::normal);
inline constexpr unsigned highest_level = priority_levels - 1;
// A set of levels: bit L for level L.
inline constexpr unsigned level_bit(unsigned level) noexcept { return 1u << level; }

template <class Queue>
class priority_queues {
 public:
  // May throw std::bad_alloc (a new segment), with nothing queued.
  template <class T>
  void enqueue(T* item, unsigned level) {
    // seq_cst, once per level and pool: an idle worker's last look (work_visible, under the
    // parking handshake) must not skip a level whose first task is being enqueued. The store is
    // sequenced before the enqueue's seq_cst ticket increment, and the parker reads the flag with
    // seq_cst after its own seq_cst announcement: if the parker misses the flag, the submitter's
    // later read of the parking state sees the parker, and wakes it.
    if (level != normal_level && !in_use_[level].load(std::memory_order_relaxed)) {
      in_use_[level].store(true, mutated(mutant::level_in_use_relaxed) ? std::memory_order_relaxed : std::memory_order_seq_cst);
    }
    levels_[level].enqueue(item);
  }

  // True once a level other than `normal` has been used: only then does the order of levels
  // matter, and the workers pay for looking at them.
  [[nodiscard]] bool prioritised() const noexcept {
    return in_use_[level_of(priority::low)].load(std::memory_order_relaxed) ||
           in_use_[level_of(priority::high)].load(std::memory_order_relaxed);
  }

  template <class T>
  [[nodiscard]] std::size_t try_dequeue_bulk(unsigned level, T** out, std::size_t max) {
    return levels_[level].try_dequeue_bulk(out, max);
  }

  // A batch on its way from a level's queue to a worker's inbox is in neither: while one is, the
  // level still counts as waiting (waiting_levels), so that other workers look again rather than
  // serve a lower level meanwhile. Only pools that use levels mark batches.
  // seq_cst, before the batch's dequeue (a seq_cst compare-exchange of the level's consumer
  // ticket): a worker whose look at the queue reads that ticket, and so finds the batch gone,
  // then sees this count too (waiting_levels reads the queue first, then the count).
  void batch_leaving(unsigned level) noexcept { in_transit_[level].value.fetch_add(1, std::memory_order_seq_cst); }
  // release: a worker that no longer sees the batch in transit sees it in the inbox.
  void batch_arrived(unsigned level) noexcept { in_transit_[level].value.fetch_sub(1, std::memory_order_release); }

  // The levels that looked non-empty. A snapshot, as empty_estimate() is for one queue.
  [[nodiscard]] unsigned waiting_levels() {
    unsigned waiting = 0;
    for (unsigned level = 0; level < priority_levels; ++level) {
      if (level != normal_level && !in_use_[level].load(std::memory_order_seq_cst)) continue;
      // The queue first, then the batches in transit: see batch_leaving.
      if (!levels_[level].empty_estimate() || in_transit_[level].value.load(std::memory_order_acquire) != 0) {
        waiting |= level_bit(level);
      }
    }
    return waiting;
  }
  [[nodiscard]] bool empty_estimate() { return waiting_levels() == 0; }

  // The levels' queues, for what each queue reports on itself (metrics, model teardown).
  [[nodiscard]] Queue& level(unsigned l) noexcept { return levels_[l]; }
  [[nodiscard]] const Queue& level(unsigned l) const noexcept { return levels_[l]; }

 private:
  Queue levels_[priority_levels];
  atomic<bool> in_use_[priority_levels]{};
  struct alignas(cache_line_size) transit_count {
    atomic<std::uint32_t> value{0};
  };
  transit_count in_transit_[priority_levels];
};

// Which level one worker serves next, among those with waiting tasks: the highest, except that a
// lower level is not passed over forever. Each worker counts, per lower level, the tasks of higher
// levels it started while that level had tasks waiting; when the count reaches the level's share,
// the worker's next start is from that level (the lowest such level first), and the count starts
// again. So while low tasks wait, at least one start in every low_share + 1 on each worker is a
// low one, and likewise one in every normal_share + 1 is a normal one while normal tasks wait.
// The bound, in starts: a task with k tasks of its level ahead of it starts within
// (share + 1) × (k + 1) starts of any one worker that serves that level (the oldest task of a
// level goes first: an inbox holding that level, then the level's global queue).
class level_rule {
 public:
  static constexpr std::uint32_t normal_share = 16;
  static constexpr std::uint32_t low_share = 32;

  [[nodiscard]] unsigned pick(unsigned waiting) noexcept {
    const unsigned top = highest(waiting);
    for (unsigned level = 0; level < top; ++level) {
      if ((waiting & level_bit(level)) != 0 && passed_over_[level] >= share(level)) return level;
    }
    return top;
  }

  // A task of `level` started while `waiting` had tasks.
  void started(unsigned level, unsigned waiting) noexcept {
    passed_over_[level] = 0;
    for (unsigned lower = 0; lower < level; ++lower) {
      if ((waiting & level_bit(lower)) != 0) ++passed_over_[lower];
    }
  }

  [[nodiscard]] static unsigned highest(unsigned levels) noexcept {
    for (unsigned level = highest_level; level > 0; --level) {
      if ((levels & level_bit(level)) != 0) return level;
    }
    return 0;
  }

 private:
  [[nodiscard]] static std::uint32_t share(unsigned level) noexcept {
    return level == level_of(priority::low) ? low_share : normal_share;
  }
  std::uint32_t passed_over_[priority_levels]{};
};

}  // namespace tidepool::detail
