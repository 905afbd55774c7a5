#pragma once
// A pool's timers (submit_after, submit_at, go_every on the pool and its subpools). Private to lib/.
//
// One per pool: a min-heap of entries ordered by due time (ties: the order they were added),
// under one mutex, served by one timer thread, started by the first timer. The thread sleeps on
// a condition variable until the earliest entry is due (or a new entry comes first), so while
// only timers are pending it uses no CPU; no thread per timer. It takes due entries out of the
// heap one at a time and, outside the lock:
//   * a delayed task: hands it to its pool or subpool (enqueue_due), which puts it in the queues
//     like a submission. The task was counted `submitted` and `scheduled` when it was accepted;
//     it leaves `scheduled` just before it becomes visible in a queue (see pool_metrics). If a
//     bounded queue is full, it goes back into the heap, due, and is retried every millisecond
//     (never dropped; later entries wait behind it);
//   * a periodic timer: submits one run (unless the previous run is unfinished: the tick is
//     skipped) and goes back into the heap for its next tick.
//
// Stopping: the pool's stop() closes the queue (nothing is accepted afterwards) and cancels every
// entry: delayed tasks are counted `cancelled`, their callables destroyed and their handles told;
// periodic timers end. The thread then exits; the pool's shutdown joins it. A subpool's stop()
// cancels the entries of every subpool that is now stopping (itself and those nested in it).
//
// Lifetimes: an entry of a subpool holds one unit of the subpool's pending count (its task's
// unit for a delayed task; for a periodic timer, a unit taken while the thread works on a tick
// outside the lock), so a subpool never goes while the timer thread may still touch it; its
// stop() removes its entries under the lock before its stop_and_wait() waits.

#include <atomic>              // for std::atomic
#include <chrono>              // for std::chrono::steady_clock, std::chrono::nanoseconds
#include <condition_variable>  // for std::condition_variable
#include <cstdint>             // for std::uint64_t
#include <memory>              // for std::unique_ptr
#include <mutex>               // for std::mutex, std::unique_lock
#include <thread>              // for std::thread
#include <vector>              // for std::vector

#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/periodic_state.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

class pool_core;
class subpool_core;

class timer_queue {
 public:
  using clock = std::chrono::steady_clock;

  explicit timer_queue(pool_core& core) noexcept : core_(core) {}
  ~timer_queue();
  timer_queue(const timer_queue&) = delete;
  timer_queue& operator=(const timer_queue&) = delete;

  // A delayed task, already counted `submitted` (by the pool, and by `sub` and its ancestors if
  // not null), and by `sub`'s chain as `scheduled`. Counts it `scheduled` in the pool. False if
  // the queue is closed (the pool stopped) or `sub` is stopping: nothing counted here, the
  // caller takes its counts back. Throws std::bad_alloc or std::system_error (starting the
  // thread), with nothing counted here either.
  [[nodiscard]] bool add_delayed(clock::time_point due, task_node* node, subpool_core* sub);
  // A periodic timer whose first tick is one period from now; takes a reference to `state`.
  // False (nothing taken) under the same conditions.
  [[nodiscard]] bool add_periodic(std::chrono::nanoseconds period, periodic_state* state, subpool_core* sub);

  // cancel() on the handle of a delayed task, which the caller has claimed (claimed_bit) while its
  // delayed_bit was set. Waits for an entry being fired, then: `cancelled` if the task was still
  // here (removed, cancelled and counted as stop() does); `queued` if it has entered a queue
  // meanwhile (the caller cancels it as a queued task); `gone` if stop() cancelled it.
  enum class delayed_cancel { cancelled, queued, gone };
  [[nodiscard]] delayed_cancel cancel_delayed(task_node* node) noexcept;
  // For the pool's and subpools' enqueue_due: the task leaves the delayed state just before it
  // enters a queue; restored if it could not, unless someone claimed it in between (true then: a
  // canceller or a waiter has taken it over as a queued task, and the caller lets go of it).
  static void leaving_delayed(task_node* node) noexcept {
    node->state.fetch_and(~delayed_bit, std::memory_order_acq_rel);
  }
  [[nodiscard]] static bool taken_while_leaving(task_node* node) noexcept {
    return (node->state.fetch_or(delayed_bit, std::memory_order_acq_rel) & claimed_bit) != 0;
  }

  // The pool stops: refuse from now on, cancel every entry, let the thread exit.
  void close_and_cancel_all() noexcept;
  // A subpool stopped: cancel the entries of every subpool that is stopping now.
  void cancel_stopping_subpools() noexcept;
  // Waits for the thread to exit (after close_and_cancel_all). From the timer thread itself (a
  // cancelled callable's destructor destroying the pool) it detaches instead.
  void join() noexcept;
  // In a child after fork(): the thread is not there; leave its object alone.
  void forget() noexcept;

  // Counted by the thread that makes the change; read by metrics (scheduled before submitted).
  [[nodiscard]] std::uint64_t scheduled() const noexcept { return scheduled_.load(std::memory_order_seq_cst); }
  [[nodiscard]] std::uint64_t cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
  // For the pool's and subpools' enqueue_due: the task leaves `scheduled` just before it becomes
  // visible in a queue (or comes back if it could not be queued).
  void leave_scheduled() noexcept { scheduled_.fetch_sub(1, std::memory_order_seq_cst); }
  void return_to_scheduled() noexcept { scheduled_.fetch_add(1, std::memory_order_seq_cst); }
  // The pool's own delayed tasks count as external submissions when accepted; for the metrics'
  // global_pushes, those not (yet) in the global queue: scheduled, or cancelled before due.
  [[nodiscard]] std::uint64_t outside_global_queue() const noexcept {
    return outside_global_queue_.load(std::memory_order_acquire);
  }
  void entering_global_queue() noexcept { outside_global_queue_.fetch_sub(1, std::memory_order_release); }
  void not_entering_global_queue() noexcept { outside_global_queue_.fetch_add(1, std::memory_order_release); }

 private:
  struct entry {
    clock::time_point due;
    std::uint64_t order;             // ties of `due` keep the order of adding
    task_node* node;                 // a delayed task, or
    periodic_state* periodic;        // a periodic timer (one reference)
    std::chrono::nanoseconds period;
    subpool_core* sub;               // null: the pool's own
    entry* next_doomed = nullptr;    // for cancelling outside the lock without allocating
  };
  struct later_first {
    bool operator()(const entry* a, const entry* b) const noexcept {
      return a->due != b->due ? a->due > b->due : a->order > b->order;
    }
  };

  [[nodiscard]] bool add(std::unique_ptr<entry> e);  // takes the lock
  void run() noexcept;                                // the timer thread
  enum class fired { done, again, full };             // done: delete it; again: next tick; full: retry
  [[nodiscard]] fired fire(entry& e) noexcept;        // outside the lock
  void submit_tick(entry& e) noexcept;                // one run of a periodic timer
  void cancel(entry* e) noexcept;                     // outside the lock; deletes it
  // Under the lock: until the thread is done with the entry it took out (not on the thread itself).
  void wait_while_firing(std::unique_lock<std::mutex>& lock) noexcept;

  pool_core& core_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<entry*> heap_;            // guarded by mutex_; a min-heap by later_first
  std::uint64_t next_order_ = 0;        // guarded by mutex_
  bool closed_ = false;                 // guarded by mutex_
  bool firing_ = false;                 // guarded by mutex_: the thread works on an entry it took out
  std::condition_variable fired_;       // firing_ became false
  clock::time_point retry_at_{};        // guarded by mutex_: a full queue refused the earliest
  std::unique_ptr<std::thread> thread_;  // started under mutex_ by the first add

  alignas(cache_line_size) std::atomic<std::uint64_t> scheduled_{0};
  std::atomic<std::uint64_t> cancelled_{0};
  std::atomic<std::uint64_t> outside_global_queue_{0};
};

}  // namespace tidepool::detail
