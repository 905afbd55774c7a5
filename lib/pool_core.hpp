#pragma once
// The scheduler behind tidepool::pool. Private to lib/.
//
// Read it in the order a task travels:
//   submission.cpp  admission (capacity, stop), counting, and the one place that decides where a
//                   task goes (`schedule`)
//   worker.cpp      the worker loop: find a task (own deque, global queue, steal), run it, finish it
//   parking.cpp     what an idle worker does: search briefly, then sleep; and who wakes whom
//   waiting.cpp     waiting for a task, a group or the pool to drain, helping when on a worker
//   pool.cpp        the public tidepool::pool, a thin shell over this core; metrics; resize
//   fork_join.cpp   spawning parallel_invoke's stack jobs onto a worker's deque, taking them back
//   subpool.cpp     subpools: their own queue, drained by runner jobs placed like tasks (see
//                   subpool_core.hpp)
//
// Kinds of node execute() handles: tasks (counted, maybe in a group and/or a subpool),
// fork-join jobs (on a spawner's stack, not counted) and subpool runner jobs (not counted).
//
// Invariants:
//   * Every accepted task is counted `submitted` exactly once before any worker can see it, and
//     afterwards exactly once as started, cancelled or expired, and each started one exactly once
//     as succeeded or failed, each by the thread that did it (a task<T>::cancel() by the
//     cancelling thread).
//   * A worker's counters are written only by that worker (owned_counter: no locked instruction).
//     Only external submissions, refusals and cancel() from outside touch shared counters.
//   * A task is in at most one queue slot at a time, and the slot is cleared when it is taken.

#include <algorithm>  // for std::max
#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono::steady_clock
#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint32_t, std::uint64_t
#include <memory>   // for std::unique_ptr, std::enable_shared_from_this
#include <mutex>    // for std::mutex
#include <optional> // for std::optional
#include <stop_token>  // for std::stop_callback
#include <stdexcept>  // for std::length_error
#include <vector>   // for std::vector

#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/chase_lev_deque.hpp"
#include "tidepool/detail/parking_handshake.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/detail/task_owner.hpp"
#include "tidepool/latency_histogram.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/detail/priority_queues.hpp"
#include "global_queue.hpp"
#include "timer_queue.hpp"
#include "worker_thread.hpp"

namespace tidepool::detail {

// A counter written by one thread only and read by any: a plain load and store, no lock prefix.
// release/acquire so that a reader who sees a count also sees what the writer did before it.
class owned_counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }
  // Only to take back an add() whose operation failed before anyone could see its effect.
  void subtract(std::uint64_t n = 1) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_release);
  }
  [[nodiscard]] std::uint64_t read() const noexcept { return value_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

inline std::uint64_t steady_nanoseconds() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// A latency histogram written by one worker only and read by any, like owned_counter. A reader
// may see a bucket counted before the matching sum or max: each field is right on its own.
class owned_histogram {
 public:
  void record(std::uint64_t ns) noexcept {
    buckets_[latency_histogram::bucket_of(ns)].add();
    sum_ns_.add(ns);
    if (ns > max_ns_.load(std::memory_order_relaxed)) max_ns_.store(ns, std::memory_order_relaxed);
  }
  void add_to(latency_histogram& h) const noexcept {
    for (std::size_t i = 0; i < latency_histogram::bucket_count; ++i) {
      const std::uint64_t n = buckets_[i].read();
      h.buckets[i] += n;
      h.count += n;
    }
    h.sum_ns += sum_ns_.read();
    h.max_ns = std::max(h.max_ns, max_ns_.load(std::memory_order_relaxed));
  }

 private:
  owned_counter buckets_[latency_histogram::bucket_count];
  owned_counter sum_ns_;
  std::atomic<std::uint64_t> max_ns_{0};
};

// Submissions from threads outside the pool, counted in shards so that producers on different
// threads do not fight over one cache line (each submission makes two read-modify-writes here).
// A thread always uses the same shard; readers sum them.
class external_submissions {
 public:
  static constexpr std::size_t shard_count = 16;

  struct alignas(cache_line_size) shard {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> accepted_for_subpools{0};  // of `accepted`: metrics only
    // Of `accepted`, per priority level (metrics only; `normal` is what the others leave).
    std::atomic<std::uint64_t> accepted_at_level[priority_levels]{};
    // Threads inside submit() now. A submitter still touches the pool after its task is
    // published (hazard release, wake-up), and that task may be the one that destroys the pool:
    // shutdown() waits for every shard to reach zero before the core can go away.
    std::atomic<std::uint32_t> inside{0};
  };

  [[nodiscard]] shard& of_this_thread() noexcept;

  // seq_cst loads: they take part in stop_and_wait's Dekker argument (submission.cpp).
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    std::uint64_t sum = 0;
    for (const shard& s : shards_) sum += s.accepted.load(std::memory_order_seq_cst);
    return sum;
  }
  [[nodiscard]] std::uint64_t accepted_for_subpools() const noexcept {
    std::uint64_t sum = 0;
    for (const shard& s : shards_) sum += s.accepted_for_subpools.load(std::memory_order_relaxed);
    return sum;
  }
  [[nodiscard]] std::uint64_t accepted_at_level(unsigned level) const noexcept {
    std::uint64_t sum = 0;
    for (const shard& s : shards_) sum += s.accepted_at_level[level].load(std::memory_order_relaxed);
    return sum;
  }
  [[nodiscard]] bool anyone_inside() const noexcept {
    for (const shard& s : shards_) {
      if (s.inside.load(std::memory_order_acquire) != 0) return true;
    }
    return false;
  }

 private:
  shard shards_[shard_count];
};

class pool_core;
class subpool_core;

// A worker's life across resize(): active → retiring (asked to leave) → leaving (its thread
// hands its deque over and exits) → exited; a grow may turn retiring back into active, or
// restart an exited worker.
enum class worker_state : std::uint8_t { active, retiring, leaving, exited };

struct alignas(cache_line_size) worker {
  worker(pool_core& owner, std::size_t position) : core(owner), index(position), rng_state(position * 2 + 1) {}

  pool_core& core;
  const std::size_t index;
  // Fork-join work this worker spawned (parallel_invoke's jobs, parallel_for's halves, tasks a
  // task_group running here submitted): the owner pops the newest, thieves take the oldest.
  chase_lev_deque<task_node> deque;
  // Submitted tasks this worker took from the global queue in a batch, in submission order.
  // A FIFO: the owner pushes at the bottom, and everyone, the owner included, takes from the top
  // with steal(), so the owner and thieves alike take the oldest first. It is a Chase–Lev deque
  // used from one end on purpose: the structure and its proven orders are the same, nothing new
  // to trust. Never holds more than one batch.
  chase_lev_deque<task_node> inbox{inbox_capacity};
  static constexpr std::size_t inbox_capacity = 64;
  // The priority level of the batch in the inbox: written by the owner before it pushes a batch,
  // read by thieves as a hint (a stale read makes a thief take a task of another level, never
  // lose one).
  std::atomic<unsigned> inbox_level{normal_level};
  // Every this many starts, a worker first takes the oldest submitted task in sight (its inbox,
  // then the global queue) before its own fork-join work. Go's scheduler uses 61 for the same
  // purpose: prime, so it does not fall into step with periodic task patterns, and rare enough
  // that fork-join keeps its cache locality. The starvation bound (worker.cpp) is stated in it.
  static constexpr std::uint32_t fair_take_interval = 61;

  // Owner-only state, on lines of its own (the deque's indices sit on their own lines too).
  struct alignas(cache_line_size) counters_t {
    owned_counter submitted;  // tasks this worker's tasks submitted (accepted)
    owned_counter started;
    owned_counter succeeded;
    owned_counter failed;
    owned_counter cancelled;
    owned_counter expired;  // skipped at their deadline (submit_options)
    owned_counter local_pushes;
    owned_counter global_pushes;  // tasks this worker's tasks submitted to the global queue
    owned_counter overflow_pushes;
    owned_counter global_pops;
    owned_counter steal_attempts;
    owned_counter steals;
    owned_counter inline_runs;
    owned_counter parks;
    owned_counter wakeups;
    // Per priority level, only while levels other than normal are in use (metrics: a level's
    // waiting tasks are what was accepted at that level and neither started nor skipped).
    owned_counter submitted_at_level[priority_levels];
    owned_counter started_at_level[priority_levels];
    owned_counter skipped_at_level[priority_levels];
  } counters;
  owned_histogram queue_wait;  // sampled tasks' submit → start
  owned_histogram run_time;    // sampled tasks' start → end
  owned_histogram wake_latency;  // this worker's wake-ups: the call → running again (parking.cpp)
  owned_histogram queue_wait_at_level[priority_levels];
  level_rule levels;  // which priority level this worker serves next (priority_queues.hpp)
  std::uint32_t until_fair_take = fair_take_interval;  // counts down the starts between fair takes
  std::uint64_t rng_state;      // picks the first steal victim
  std::size_t help_depth = 0;   // helping waits nested on this thread's stack now
  // How deeply helping waits may nest on one worker's stack. Each helped task may itself wait
  // and help, so without a cap a pile of tasks that all wait for one slow task would nest on a
  // single stack until it overflows. Past the cap a waiting worker runs only its own fork-join
  // work and the very task it waits for (waiting.cpp). 256 levels of a few hundred bytes each
  // stay far inside an 8 MiB stack.
  static constexpr std::size_t max_help_depth = 256;
  // Counted in pool_core::searching_. Written by this worker, or by the thread that wakes it
  // while it sleeps (under the idle lock, published through wake_word).
  bool searching = false;
  // Owner only (parking.cpp): when this worker last ran out of work (0: it has work), and the
  // average of its recent idle gaps, which sizes its next search. Starts "long" (the most a gap
  // counts for): search briefly until short gaps are seen; three or four of them suffice.
  std::uint64_t idle_since_ns = 0;
  static constexpr std::uint64_t longest_counted_idle_gap_ns = 400'000;
  std::uint64_t recent_idle_gap_ns = longest_counted_idle_gap_ns;
  std::uint64_t search_budget_ns = 0;   // for the current idle period, fixed when it begins
  std::uint32_t tasks_since_idle = 0;   // tasks the worker loop ran since it last ran out of work
  // Owner only (worker.cpp, pace_global_take): when this worker's last take from the global queue
  // came back short of a batch (0: a full batch, nothing, or it pushed since its previous short
  // take), its global_pushes count then, and how many more takes go unpaced after a wait that did
  // not pay.
  std::uint64_t short_take_at_ns = 0;
  std::uint64_t global_pushes_at_short_take = 0;
  std::uint32_t unpaced_short_takes = 0;
  std::atomic<std::uint32_t> wake_word{0};  // the futex this worker sleeps on; 1 = woken
  // When the wake-up call was made: written by the waker before wake_word, which publishes it.
  std::uint64_t woken_at_ns = 0;
  std::atomic<worker_state> state{worker_state::active};
  worker_thread thread;
};

// The workers, in slots that never move: readers iterate them without a lock while resize()
// adds workers. A worker, once created, lives as long as the pool: retired ones keep their
// counters (so metrics stay exact) and may be restarted.
class worker_slots {
 public:
  static constexpr std::size_t capacity = 1024;

  worker_slots() : slots_(std::make_unique<std::unique_ptr<worker>[]>(capacity)) {}

  // Every worker ever created, retired ones included.
  [[nodiscard]] std::size_t size() const noexcept { return count_.load(std::memory_order_acquire); }
  [[nodiscard]] const std::unique_ptr<worker>& operator[](std::size_t i) const noexcept { return slots_[i]; }
  [[nodiscard]] const std::unique_ptr<worker>* begin() const noexcept { return slots_.get(); }
  [[nodiscard]] const std::unique_ptr<worker>* end() const noexcept { return slots_.get() + size(); }

  // Only one thread at a time (pool construction, or resize under its mutex).
  worker& add(std::unique_ptr<worker> w) {
    const std::size_t i = count_.load(std::memory_order_relaxed);
    if (i == capacity) throw std::length_error("tidepool: a pool has at most 1024 workers");
    slots_[i] = std::move(w);
    // release: a reader that sees the new count sees a fully constructed worker.
    count_.store(i + 1, std::memory_order_release);
    return *slots_[i];
  }

 private:
  std::unique_ptr<std::unique_ptr<worker>[]> slots_;
  std::atomic<std::size_t> count_{0};
};

// Set on a worker thread for its whole life.
worker* current_worker() noexcept;

class pool_core : public std::enable_shared_from_this<pool_core> {
 public:
  explicit pool_core(pool_options options);
  ~pool_core();

  void start();  // launches the workers; separate from the constructor so they can share ownership

  // --- submission.cpp
  submit_status submit(task_node* node, bool may_block);
  submit_status submit_from_worker(worker& self, task_node* node, bool may_block);
  // For subpools: count a task they accepted as submitted here too; false (nothing counted) if
  // this pool is stopping. uncount_accepted takes a count back whose task never got queued.
  [[nodiscard]] bool count_accepted(worker* self, priority level) noexcept;
  void uncount_accepted(worker* self, priority level) noexcept;
  // A delayed task, counted submitted at no level when accepted, is counted at its level once
  // due: per-level figures (metrics) count tasks in the queues, not those still scheduled.
  void count_due_at_level(priority level, bool add = true) noexcept;
  void count_dropped() noexcept { dropped_.fetch_add(1, std::memory_order_relaxed); }
  // Stamps every latency_sample_every-th node submitted by this thread with the time.
  void sample_submit_time(task_node* node) const noexcept;
  // An internal job (a subpool's runner): placed like a task, never counted or refused.
  void schedule_internal(task_node* job) { schedule(worker_of_this_thread(), job); }
  // An internal or embedded job that `self`, one of our workers, cannot put on its full deque:
  // onto the global queue, where any worker finds it. False if the queue could not grow
  // (std::bad_alloc for a new segment): the caller runs the job itself then.
  [[nodiscard]] bool try_queue_globally(worker& self, task_node* job) noexcept;
  [[nodiscard]] const pool_options& options() const noexcept { return options_; }
  void stop() noexcept;
  [[nodiscard]] bool stopping() const noexcept { return stopping_.load(std::memory_order_seq_cst); }
  // stop(), and skip every task that has not started yet (the options' stop token).
  void cancel() noexcept;

  // --- timers.cpp: delayed tasks (counted submitted and scheduled now, queued when due) and
  // periodic timers, for this pool's own tasks; the timer queue serves its subpools too.
  submit_status submit_at(task_node* node, std::chrono::steady_clock::time_point when);
  submit_status start_periodic(periodic_state* state, std::chrono::nanoseconds period);
  // A due delayed task into the queues, like a submission; false if a bounded queue is full.
  [[nodiscard]] bool enqueue_due(task_node* node) noexcept;
  [[nodiscard]] timer_queue& timers() noexcept { return timers_; }

  // --- worker.cpp
  // look_at_global false: all but the global queues (a searcher's in-between looks, parking.cpp).
  [[nodiscard]] task_node* find_task(worker& w, bool look_at_global = true) noexcept;
  void execute(worker& w, task_node* node, bool holds_slot) noexcept;
  // Runs `node`, a task with a handle that the calling worker waits for, here and now if nobody
  // has started it yet; false otherwise. Used past the helping cap (waiting.cpp).
  [[nodiscard]] bool run_if_unstarted(worker& w, task_node* node) noexcept;
  // For task<T>::cancel, on any thread: `node`, a task this pool counts that the caller has just
  // claimed before anyone started it, is cancelled here and now, and reported to `owner`.
  void cancel_unstarted(task_node* node, task_owner* owner) noexcept;
  // For a task with flag_completes_later that this pool counts, on any thread: what the worker
  // does after a run, done now (detail::complete_deferred, task_completion.hpp).
  void complete_deferred(task_node* node) noexcept;

  // --- parking.cpp
  [[nodiscard]] task_node* search(worker& w) noexcept;
  [[nodiscard]] bool park(worker& w) noexcept;
  void wake_one_if_needed(worker* waker) noexcept;
  void stop_searching(worker& w) noexcept;

  // --- waiting.cpp
  void stop_and_wait();
  void shutdown();

  [[nodiscard]] pool_metrics metrics() const;
  [[nodiscard]] std::size_t worker_count() const noexcept { return target_workers_.load(std::memory_order_acquire); }
  void resize(std::size_t workers);

  // True in a child process forked after this pool was created: none of its workers exists
  // there, so it refuses every submission and its shutdown waits for nothing (pool.cpp).
  [[nodiscard]] bool forked_away() const noexcept;

  // --- subpool.cpp: every live subpool of this pool, at any depth. A thread blocked on a full
  // subpool sleeps on that subpool's word only; a stop of the pool or of any subpool wakes them
  // all, and each re-checks whether its own subpool or an ancestor stopped.
  void register_subpool(subpool_core& sub);
  void unregister_subpool(subpool_core& sub) noexcept;
  void wake_blocked_subpool_submitters() noexcept;
  [[nodiscard]] worker* worker_of_this_thread() noexcept {
    worker* w = current_worker();
    return w != nullptr && &w->core == this ? w : nullptr;
  }

 private:
  friend void worker_main(std::shared_ptr<pool_core> core, worker* w);
  friend class timer_queue;  // tells drain waiters of a cancelled delayed task (notify_drain)

  enum class admission { admitted, run_inline, full, stopped };
  admission admit(worker* self, bool may_block);
  void release_slot() noexcept;
  void refuse(task_node* node) noexcept;
  submit_status submit_external(external_submissions::shard& mine, task_node* node, bool may_block);
  // Undoes the count of an external submission that could not be queued, and counts it dropped.
  void take_back(external_submissions::shard& mine, priority level) noexcept;
  // Per-level submission counts, kept for the levels other than normal only (metrics).
  static void count_at_level(external_submissions::shard& mine, priority level, bool add) noexcept;
  static void count_at_level(worker& self, priority level, bool add) noexcept;
  void schedule(worker* self, task_node* node);
  // schedule()'s global branch; throws std::bad_alloc (a new segment).
  void queue_globally(worker* self, task_node* node);
  // A thread outside the pool far ahead of the workers gives up its CPU now and then.
  void yield_if_far_ahead(unsigned level) noexcept;
  void report_unhandled(std::exception_ptr error) noexcept;
  // One task from another worker's inbox or deque (`source`), oldest first; null if none.
  // `only_level`: from inboxes holding that priority level only.
  [[nodiscard]] task_node* steal_for(worker& w, chase_lev_deque<task_node> worker::*source,
                                     unsigned only_level = any_level) noexcept;
  static constexpr unsigned any_level = priority_levels;
  // A batch into our inbox when it is empty, else (or if `one_task`) a single task.
  [[nodiscard]] task_node* take_global(worker& w, unsigned level, bool one_task = false) noexcept;
  // Waits a moment before a take that would keep this worker in lockstep with a producer.
  [[nodiscard]] static bool pace_global_take(worker& w) noexcept;
  static void note_global_take(worker& w, std::size_t taken, std::size_t batch, bool paced) noexcept;
  [[nodiscard]] task_node* take_by_priority(worker& w) noexcept;
  [[nodiscard]] task_node* take_at_level(worker& w, unsigned level, bool one_task = false) noexcept;
  [[nodiscard]] static task_node* take_inbox(worker& w) noexcept;
  [[nodiscard]] task_node* take_oldest_submitted(worker& w, bool look_at_global = true) noexcept;
  [[nodiscard]] static bool fair_take_due(worker& w) noexcept;
  void run_task(worker& w, task_node* node, bool holds_slot) noexcept;
  // After a run: tells the owner, counts (on `self`, or as finished elsewhere when null),
  // publishes, releases the node. The owner's task_released is the caller's, last.
  void end_run(worker* self, task_node* node, task_owner* owner, task_extras* extras, bool holds_slot) noexcept;
  [[nodiscard]] bool work_visible() noexcept;
  bool try_become_searching(worker& w) noexcept;
  void notify_one(worker* waker) noexcept;
  static void wake(worker& sleeper) noexcept;
  void wake_all_sleepers() noexcept;  // for shutdown and shrinking; allocates nothing
  void notify_drain() noexcept;
  [[nodiscard]] std::uint64_t unfinished() const noexcept;  // accepted, not finished
  [[nodiscard]] std::uint64_t queued() const noexcept;      // accepted, not started or cancelled
  [[nodiscard]] std::uint64_t submitted() const noexcept;

  const pool_options options_;
  const std::uint32_t fork_generation_;  // the process's fork generation when created (pool.cpp)
  worker_slots workers_;
  priority_queues<global_queue> global_;
  std::atomic<std::size_t> slot_limit_;  // workers + queue_capacity, or unbounded

  // Resizing (pool.cpp). running_workers_ counts threads in the worker loop, retiring ones
  // included until they leave; target_workers_ is what resize() asked for.
  std::mutex resize_mutex_;
  std::atomic<std::size_t> target_workers_{0};
  std::atomic<std::uint32_t> running_workers_{0};
  void launch(worker& w);
  void publish_worker_count(std::size_t active) noexcept;
  // `found`: a task this worker took after it was asked to retire, handed to the others.
  [[nodiscard]] bool retire(worker& w, task_node* found = nullptr) noexcept;

  // The owner of every task submitted straight to this pool (task_owner.hpp): it only marks them
  // as direct; run_task tells it nothing.
  class direct_task_owner final : public task_owner {
   public:
    using task_owner::task_owner;
  };
  direct_task_owner direct_tasks_{this, /*stays_local=*/false};

  // Shared counters: only external submissions and refusals write them.
  external_submissions external_;
  alignas(cache_line_size) std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> cancelled_by_handles_{0};  // cancel() from threads outside the pool
  // Deferred tasks (complete_deferred) finished on threads that are not this pool's workers.
  std::atomic<std::uint64_t> succeeded_elsewhere_{0};
  std::atomic<std::uint64_t> failed_elsewhere_{0};
  std::atomic<std::uint64_t> cancelled_by_handles_at_level_[priority_levels]{};  // of those, per level (not normal)
  std::atomic<std::uint64_t> external_wakeups_{0};
  std::atomic<std::uint64_t> external_runner_pushes_{0};  // subpool runner jobs from outside threads

  // Lifecycle.
  alignas(cache_line_size) std::atomic<bool> stopping_{false};
  std::atomic<bool> cancelling_{false};  // the options' stop token fired: skip what has not started
  std::atomic<bool> shutdown_{false};
  std::atomic<std::uint32_t> drain_epoch_{0};  // bumped when a drain waiter may have work to re-check

  // Parking (see parking.cpp). Written on idle/busy transitions only, read on every submission.
  alignas(cache_line_size) std::atomic<std::uint32_t> searching_{0};
  std::atomic<std::uint32_t> unparked_{0};  // workers not on sleepers_
  std::atomic<std::uint32_t> in_transit_{0};  // woken, not yet running (parking_handshake.hpp)
  std::mutex idle_mutex_;
  std::vector<worker*> sleepers_;  // guarded by idle_mutex_; capacity reserved: never allocates
  // The decisions over these four (detail/parking_handshake.hpp, model-checked in test/relacy/).
  [[nodiscard]] parking_handshake<worker, std::mutex> handshake() noexcept {
    return {searching_, unparked_, in_transit_, idle_mutex_, sleepers_};
  }

  std::mutex subpools_mutex_;
  std::vector<subpool_core*> subpools_;  // guarded by subpools_mutex_

  // Delayed and periodic tasks (timers.cpp). Closed by stop(); its thread joined by shutdown().
  timer_queue timers_{*this};

  // Last, so that it is destroyed first: its destructor waits for a callback in progress.
  struct cancel_on_stop {
    pool_core* core;
    void operator()() const noexcept { core->cancel(); }
  };
  std::optional<std::stop_callback<cancel_on_stop>> stop_callback_;

  // Capacity (only with a bounded queue).
  alignas(cache_line_size) std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::uint32_t> blocked_submitters_{0};
  std::atomic<std::uint32_t> capacity_epoch_{0};
};

}  // namespace tidepool::detail
