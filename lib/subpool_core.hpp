#pragma once
// The scheduler side of tidepool::subpool. Private to lib/.
//
// A subpool keeps its accepted tasks in a queue of its own and runs them through *runner jobs*:
// internal, uncounted jobs sent to the parent (the pool's deques and global queue, or the parent
// subpool's own queue). Each runner job runs one task of the subpool. The number of runner jobs
// in existence is the number of "slots" in use, at most max_concurrency, so at most that many of
// the subpool's tasks run at once — and a nested subpool's runner jobs wait in its parent's queue
// like tasks, so they also count against every ancestor's limit. Nobody ever blocks a worker.
//
// Invariant: while the queue is not empty, at least one runner job exists (queued or running).
// A runner that finds more work passes its slot to a new runner job; one that finds none gives
// its slot back and then looks at the queue once more (Dekker with submit(), which enqueues and
// then tries to take a slot). Those decisions, with their memory-ordering argument, are
// detail/runner_slots.hpp, model-checked by Relacy (test/relacy/models.cpp, subpool_hand_off).
//
// Counting: a task counts in its subpool, every ancestor subpool and the pool: submitted and
// dropped at submission, started / succeeded / failed / cancelled by pool_core::execute, which
// calls the task_owner hooks below through the node's `owner` (directly, or through the task_group
// the task belongs to).
//
// Lifetime: `pending_` counts accepted unfinished tasks, existing runner jobs and submitters
// still between publishing a task and their last touch; the destructor waits for it to reach
// zero, and the finish of any of them is its last touch of the subpool. A subpool destroyed from
// one of its own tasks cannot wait for that task: it is *orphaned* instead (stopped, and freed
// by whichever finish brings pending_ to zero; the calling task's own unit keeps it above zero
// until after the destructor returned).

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono::steady_clock, std::chrono::nanoseconds
#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint32_t, std::uint64_t
#include <mutex>    // for std::mutex
#include <optional> // for std::optional

#include "pool_core.hpp"
#include "tidepool/detail/pending_count.hpp"
#include "tidepool/detail/runner_slots.hpp"
#include "tidepool/detail/segmented_queue.hpp"
#include "tidepool/detail/task_owner.hpp"
#include "tidepool/subpool.hpp"

namespace tidepool::detail {

class subpool_core final : public task_owner {
 public:
  subpool_core(pool_core& root, subpool_core* parent, std::size_t max_concurrency, subpool_options options);
  ~subpool_core();
  subpool_core(const subpool_core&) = delete;
  subpool_core& operator=(const subpool_core&) = delete;

  submit_status submit(task_node* node, bool may_block);
  void stop() noexcept;
  void stop_and_wait();
  [[nodiscard]] bool stopping() const noexcept;  // this subpool or any ancestor, pool included (seq_cst)
  [[nodiscard]] pool_metrics metrics() const;
  [[nodiscard]] std::size_t max_concurrency() const noexcept { return runners_.limit(); }
  void set_max_concurrency(std::size_t requested);

  // --- timers.cpp: as pool_core's, for this subpool's tasks.
  submit_status submit_at(task_node* node, std::chrono::steady_clock::time_point when);
  submit_status start_periodic(periodic_state* state, std::chrono::nanoseconds period);
  [[nodiscard]] bool enqueue_due(task_node* node) noexcept;
  void leave_scheduled() noexcept;          // a delayed task of ours (or nested) is due or cancelled
  void count_cancelled_delayed() noexcept;  // one that stop cancelled, here and in every ancestor
  // The timer thread keeps us alive while it works on one of our entries outside its lock.
  void hold() noexcept { pending_.add(); }
  void let_go() noexcept { finish_pending(); }
  [[nodiscard]] std::size_t queue_capacity() const noexcept { return queue_capacity_; }
  [[nodiscard]] bool non_blocking() const noexcept { return non_blocking_; }
  [[nodiscard]] std::optional<tidepool::priority> default_priority() const noexcept { return priority_; }
  [[nodiscard]] pool_core& root() noexcept { return root_; }

  // task_owner: what pool_core::execute tells the subpool a task was submitted to. Not direct:
  // a waiter must not run a subpool's task itself (it would bypass the limit).
  void task_started() noexcept override;
  bool task_ended(const std::exception_ptr* error) noexcept override;
  void task_skipped() noexcept override;
  void task_expired() noexcept override;
  [[nodiscard]] pool_core* counting_pool() const noexcept override { return &root_; }
  void task_released() noexcept override { finish_pending(); }  // the very last touch

  // True when the calling thread runs a task of this subpool (or of a subpool nested in it),
  // possibly further down its stack below a helping wait.
  [[nodiscard]] bool runs_on_this_thread() const noexcept;
  // For the destructor called from one of our own tasks: stop, and leave the freeing to the
  // last finisher. The caller must not touch the core afterwards.
  void orphan() noexcept;
  // Called by pool_core::stop and by any subpool's stop(): wakes threads blocked on our capacity.
  void wake_blocked_submitters() noexcept;

  // A child subpool's runner job, entering this subpool's queue (not counted as a task).
  void enqueue_runner(task_node* runner) noexcept;
  // The body of one runner job: runs one task, then passes the slot on or gives it back.
  void run_one() noexcept;

 private:
  struct alignas(cache_line_size) counters_t {
    std::atomic<std::uint64_t> submitted{0};
    std::atomic<std::uint64_t> started{0};
    std::atomic<std::uint64_t> succeeded{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> cancelled{0};
    std::atomic<std::uint64_t> expired{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> scheduled{0};  // a gauge: delayed tasks not due yet
  };

  bool admit(bool from_worker, bool may_block, submit_status& refusal);
  void release_slot() noexcept;
  void refuse(task_node* node) noexcept;
  void count_dropped() noexcept;
  void send_runner() noexcept;
  void finish_pending() noexcept;  // a last touch: may free an orphaned core

  [[nodiscard]] std::size_t parent_limit() const noexcept;

  pool_core& root_;
  subpool_core* const parent_;
  const std::size_t queue_capacity_;
  const bool non_blocking_;
  const std::optional<tidepool::priority> priority_;  // for tasks without submit_options
  // max_concurrency + queue_capacity, or unbounded (then for good). Follows set_max_concurrency.
  std::atomic<std::size_t> slot_limit_;
  std::mutex resize_mutex_;  // one set_max_concurrency at a time

  segmented_queue<task_node> queue_;
  counters_t counters_;
  pending_count pending_;
  alignas(cache_line_size) runner_slots runners_;  // holds max_concurrency
  std::atomic<bool> stopping_{false};

  // Capacity (only with a bounded queue), as in pool_core.
  alignas(cache_line_size) std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::uint32_t> blocked_submitters_{0};
  std::atomic<std::uint32_t> capacity_epoch_{0};
};

}  // namespace tidepool::detail
