// The worker loop: find a task, run it, publish its completion; when there is none, go idle.

#include <pthread.h>  // for pthread_setname_np, pthread_setaffinity_np
#include <sched.h>    // for cpu_set_t, CPU_ZERO, CPU_SET

#include <algorithm>  // for std::min, std::max
#include <array>      // for std::array
#include <cstdlib>    // for std::abort
#include <string>     // for std::string
#include <system_error>  // for std::system_error, std::generic_category
#include <utility>    // for std::exchange
#include <vector>     // for std::vector

#include "outcome.hpp"
#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/task_completion.hpp"  // for after_this_run

namespace tidepool::detail {
namespace {

thread_local worker* this_thread_worker = nullptr;

// The owners of the tasks whose callables this thread is running or destroying, innermost
// first: a record per such task on the stack (helping waits nest further tasks). Lets an owner's
// destructor tell that it runs inside one of its own tasks, a capture owning it included, where
// it must not wait for that task (runs_task_of, task_owner.hpp). Direct tasks push nothing.
struct running_owner {
  const task_owner* owner;
  const running_owner* outer;
};
thread_local const running_owner* innermost_owner = nullptr;

// `op` (run or cancel) on a node of `owner`, with the owner noted as running on this thread.
void apply_noting_owner(task_node* node, task_op op, const task_owner* owner) noexcept {
  if (owner == nullptr) {
    node->ops(node, op);
    return;
  }
  const running_owner record{owner, innermost_owner};
  innermost_owner = &record;
  node->ops(node, op);
  innermost_owner = record.outer;
}

// How many tasks a worker takes from the global queue at once, into its inbox: one claim on the
// global queue instead of one per task. Split among the workers (32 / W each, at least 1) because
// it is also the start-order guarantee (pool.hpp): every worker may hold one batch, so a task
// can start at most max_batch_total ahead of an earlier one from the same thread.
constexpr std::size_t max_batch_total = 32;
static_assert(max_batch_total <= worker::inbox_capacity);

// How many times a thief retries a victim that it lost a race on before moving to the next one:
// a lost race means the victim had work a moment ago.
constexpr int lost_race_retries = 2;

void name_this_thread(const std::string& base, std::size_t index) {
#if defined(__linux__)
  std::string name = base.substr(0, 10) + "-" + std::to_string(index);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());  // Linux allows 15 characters
#else
  (void)base;
  (void)index;
#endif
}

// Pins the calling thread to the CPU `cpus` names for worker `index`; nothing if it is empty.
void pin_this_thread(const std::vector<int>& cpus, std::size_t index) {
  if (cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[index % cpus.size()], &set);  // in range: checked when the pool was built
  if (const int error = pthread_setaffinity_np(pthread_self(), sizeof set, &set); error != 0) {
    throw std::system_error(error, std::generic_category(), "tidepool: cannot pin a worker to its CPU");
  }
}

}  // namespace

worker* current_worker() noexcept { return this_thread_worker; }

void worker_main(std::shared_ptr<pool_core> core, worker* w) {
  try {
    name_this_thread(core->options_.name, w->index);
  } catch (...) {  // out of memory for the name's string: a name is cosmetic, the worker is not
  }
  this_thread_worker = w;
  const std::size_t index = w->index;  // w is not ours to read once retire() let it go
  const pool_options& options = core->options_;
  auto run_hook = [&core](auto&& hook) {
    try {
      hook();
    } catch (...) {  // a hook never costs a worker (pool_options::on_worker_start)
      core->report_unhandled(std::current_exception());
    }
  };
  run_hook([&] { pin_this_thread(options.cpus, index); });
  if (options.on_worker_start) run_hook([&] { options.on_worker_start(index); });
  for (;;) {
    if (w->state.load(std::memory_order_acquire) == worker_state::retiring && core->retire(*w)) break;
    task_node* t = core->find_task(*w);
    if (t != nullptr) {
      core->stop_searching(*w);  // if we were woken as a searcher: pass the baton on
    } else {
      t = core->search(*w);
    }
    // Asked to retire while we were looking: whatever we found goes to the workers that stay, so
    // that nothing submitted after resize() returned runs here. acquire, and enough: resize()
    // set `retiring` before it returned, and the task reached us (queue, or a deque through
    // the global queue) by release/acquire pairs that began after that.
    if (t != nullptr && w->state.load(std::memory_order_acquire) == worker_state::retiring && core->retire(*w, t)) break;
    if (t != nullptr) {
      ++w->tasks_since_idle;  // sizes the next search (parking.cpp)
      core->execute(*w, t, /*holds_slot=*/true);
      continue;
    }
    if (!core->park(*w)) break;
  }
  this_thread_worker = nullptr;
  if (options.on_worker_stop) run_hook([&] { options.on_worker_stop(index); });
  // `core` may be the last owner (the pool was destroyed from one of its own tasks): it is
  // released here, on the way out, after this thread has stopped using it.
}

bool pool_core::retire(worker& w, task_node* found) noexcept {
  worker_state expected = worker_state::retiring;
  // A grow may have taken the retirement back: whoever moves the state first decides.
  if (!w.state.compare_exchange_strong(expected, worker_state::leaving, std::memory_order_acq_rel)) return false;
  stop_searching(w);
  // Hand our queued tasks to the others (an out-of-memory enqueue here ends the process: the
  // tasks could not be given to anyone else).
  if (found != nullptr) {
    global_.enqueue(found, level_of(found->priority()));
    w.counters.overflow_pushes.add();
  }
  // The inbox's tasks go to the back of the global queue: a shrink is the one time submitted
  // tasks may start behind later ones.
  while (task_node* t = take_inbox(w)) {
    global_.enqueue(t, level_of(t->priority()));
    w.counters.overflow_pushes.add();
  }
  while (task_node* t = w.deque.pop()) {
    global_.enqueue(t, level_of(t->priority()));
    w.counters.overflow_pushes.add();
  }
  unparked_.fetch_sub(1, std::memory_order_seq_cst);
  running_workers_.fetch_sub(1, std::memory_order_seq_cst);
  wake_one_if_needed(&w);
  // As in park(): we may have finished the last task a drain waiter is waiting for.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) notify_drain();
  this_thread_worker = nullptr;
  w.state.store(worker_state::exited, std::memory_order_release);  // last touch of w
  return true;
}

// Where a worker looks for its next task, and the starvation bound that order keeps.
//
// Sources: the worker's deque (fork-join work it spawned, and runner jobs of subpools its tasks
// submitted to: newest first); the inboxes (submitted tasks some worker took from the global
// queue in one batch: oldest first, its own inbox before the others'); the global queue (every
// other submission, in order); other workers' deques (oldest first). Normally the deque comes
// first, for fork-join's cache locality; but on every fair_take_interval-th look, in the worker
// loop and in helping waits alike, the oldest submitted work comes first: inboxes, then the
// global queue. An inbox is refilled only when its owner found every inbox empty, and a worker
// takes the rest of another's batch before a new one, so a batch is not stranded behind its
// owner's long task.
//
// Order. Everything in an inbox was submitted before everything in the global queue, both are
// FIFO, a worker takes a new batch only when its own inbox and the others' look empty, and a
// batch is at most max_batch_total / W tasks: so all the tasks taken but not started fit in a
// window of max_batch_total consecutive submissions, and a task starts at most that far ahead
// of an earlier one from the same thread; on one worker, exactly in order. The exceptions: a
// batch is invisible between the global queue and its taker's inbox, so if the operating system
// deschedules the taker right there, others may run up to max_batch_total ahead of that batch
// meanwhile (one batch per descheduled worker, never more); and a task that a worker submits to
// its own full pool runs at once (submission.cpp).
//
// Starvation bound (W workers, b = max(1, max_batch_total / W)). A *start* is a worker taking a
// task from a queue, in its loop or in a helping wait; what a task runs on its own stack without
// a queue (fork-join jobs it takes back, group tasks run at once for lack of deque room, a task
// run at once on a full pool) is part of that task's run, as a function call would be. Not
// running the oldest submitted task from inside fork-join code is deliberate: that task could
// be a continuation waiting for the very task below it on the stack. Let X be an accepted task.
// In an inbox, X has at most b − 2 tasks ahead of it there, and nothing enters ahead of it;
// that inbox's owner takes its own inbox first on each fair take, so X starts within
// fair_take_interval × (b − 1) starts of its owner, or sooner elsewhere. In the global queue
// with k tasks ahead of it, X reaches an inbox after at most k batch takes. Every fair take, by
// any worker, starts an inbox task or takes a batch, and at most W × (b − 1) inbox tasks exist
// between two batch takes; so X reaches an inbox within
// fair_take_interval × (k + 1) × (W × (b − 1) + 1) starts of any one worker. New submissions
// never overtake X. In time: each start is one task's run, so a task waits at most that many of
// the longest tasks the workers run. The one exception: a worker nested more than
// max_help_depth helping waits deep runs only its own deque until it unwinds (waiting.cpp), so
// the bound then rests on the other workers.
//
// With priorities in use (take_by_priority), all of the above holds within each level: a level has
// its own global queue, an inbox holds one level's batch, and a batch is taken only into an empty
// inbox (a task of another level is taken alone). Across levels, each worker's level_rule
// (priority_queues.hpp) gives a waiting lower level one start in every share + 1 (17 for normal,
// 33 for low): a fair take that serves a higher level is still a start by which the lower level's
// count grows. So the bounds above, for a task of a lower level, grow by at most that factor.

// Why a worker sometimes waits before it takes a batch from the global queue.
//
// A worker that empties the global queue faster than a thread outside the pool fills it falls
// into step with that producer: it takes each task a moment after its publication, a few at a
// time, reading the producer's ticket and writing the slots beside the one the producer writes
// next. The producer's next locked instruction then waits for those cache lines to come back.
// On one die that cost about a tenth of 1 worker × 1 producer submission throughput. Where the
// two threads run on different dies (this VM's host does that part of the time: a cross-core
// round trip of about 330 ns instead of 55, perf/submit_placement) it cost two thirds: 4.9 M
// tasks/s against 16.2, while a mutex pool, whose worker takes a batch per lock and leaves the
// producer's lines alone meanwhile, kept 17.7.
//
// So a worker whose last take came back short of a batch, less than lockstep_window_ns ago,
// first waits lockstep_pause_ns, touching nothing shared, and lets the producer get ahead. Not if
// the worker pushed to the global queue since: a chain of tasks that each submit their successor
// would pay the wait on every link. And not for the next lockstep_backoff_takes takes after a
// wait that did not pay: one that found fewer than a cache line of the queue's slots
// (lockstep_useful_take) means the producer is not streaming, and tasks arriving a few
// microseconds apart would each wait for nothing. The cost: a task starts at most
// lockstep_pause_ns later than it would have, and only while short takes follow one another;
// the starvation bound, counted in starts, is unchanged.
namespace {
constexpr std::uint64_t lockstep_window_ns = 4'000;
constexpr std::uint64_t lockstep_pause_ns = 2'000;
constexpr std::size_t lockstep_useful_take = 8;
constexpr std::uint32_t lockstep_backoff_takes = 64;
}  // namespace

bool pool_core::pace_global_take(worker& w) noexcept {
  if (w.short_take_at_ns == 0 || w.unpaced_short_takes > 0 ||
      w.counters.global_pushes.read() != w.global_pushes_at_short_take) {
    return false;
  }
  const std::uint64_t now = steady_nanoseconds();
  if (now - w.short_take_at_ns >= lockstep_window_ns) return false;
  test_hooks::at(test_hooks::point::before_lockstep_pause);
  do {
    for (int i = 0; i < 8; ++i) cpu_pause();
  } while (steady_nanoseconds() - now < lockstep_pause_ns);
  return true;
}

void pool_core::note_global_take(worker& w, std::size_t taken, std::size_t batch, bool paced) noexcept {
  if (paced && taken < lockstep_useful_take) {
    w.unpaced_short_takes = lockstep_backoff_takes;
  } else if (w.unpaced_short_takes > 0 && taken > 0) {
    --w.unpaced_short_takes;
  }
  const bool short_take = taken > 0 && taken < batch;
  const std::uint64_t pushes = w.counters.global_pushes.read();
  // A worker that pushed since its previous short take runs tasks that submit more (a chain):
  // pace_global_take would not wait for it, so skip the clock read, a third of a chain link's cost.
  if (!short_take || pushes != w.global_pushes_at_short_take) {
    w.short_take_at_ns = 0;
    w.global_pushes_at_short_take = pushes;
    return;
  }
  w.short_take_at_ns = steady_nanoseconds();
}

task_node* pool_core::take_global(worker& w, unsigned level, bool one_task) noexcept {
  // With priorities in use, a worker may take a task of one level while its inbox holds a batch of
  // another: then it takes that one task only, and the inbox keeps its single batch.
  if (one_task || !w.inbox.empty_estimate()) {
    task_node* one = nullptr;
    if (global_.try_dequeue_bulk(level, &one, 1) == 0) return nullptr;
    w.counters.global_pops.add();
    return one;
  }
  // The first task runs now; the rest go into our inbox, oldest at the top, where we and the
  // other workers take them in order. Our inbox is empty, and thieves can only shrink it, so the
  // batch fits.
  std::array<task_node*, max_batch_total> batch;
  const std::size_t workers = std::max<std::size_t>(target_workers_.load(std::memory_order_relaxed), 1);
  const std::size_t share = std::max<std::size_t>(max_batch_total / workers, 1);
  const bool prioritised = global_.prioritised();
  const bool paced = pace_global_take(w);
  if (prioritised) global_.batch_leaving(level);
  const std::size_t count = global_.try_dequeue_bulk(level, batch.data(), share);
  note_global_take(w, count, share, paced);
  if (count > 1) {
    w.inbox_level.store(level, std::memory_order_relaxed);  // a hint for thieves, see worker
    for (std::size_t i = 1; i < count; ++i) {
      if (!w.inbox.push(batch[i])) std::abort();  // cannot happen: see above
    }
  }
  if (prioritised) global_.batch_arrived(level);
  if (count == 0) return nullptr;
  w.counters.global_pops.add(count);
  if (count > 1) {
    // More than we can run at once: maybe someone can help. The pushes are plain stores; the
    // wake-up decision reads the parking counters: store→load needs the fence (parking.cpp).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake_one_if_needed(&w);
  }
  return batch[0];
}

task_node* pool_core::take_inbox(worker& w) noexcept {
  // Only we push, so an inbox that looks empty to us is empty: skip steal()'s fence then.
  while (!w.inbox.empty_estimate()) {
    const steal_result<task_node> r = w.inbox.steal();
    if (r.status == steal_status::success) return r.item;
    if (r.status == steal_status::empty) break;
    // lost_race: another worker took the oldest one; look again.
  }
  return nullptr;
}

task_node* pool_core::take_oldest_submitted(worker& w, bool look_at_global) noexcept {
  // Until a level other than normal is used, every submitted task is normal: skip the levels.
  // With levels, the inboxes wait for the next look at the global queues too.
  if (global_.prioritised()) return look_at_global ? take_by_priority(w) : nullptr;
  if (task_node* t = take_inbox(w)) return t;
  if (task_node* t = steal_for(w, &worker::inbox)) return t;
  return look_at_global ? take_global(w, normal_level) : nullptr;
}

// The oldest task of the level the level rule picks (priority_queues.hpp), or, if that level ran
// dry meanwhile, of the highest other level in sight. What is in sight: the global queue of each
// level and every worker's inbox, a scan of W inboxes per start that only pools using priorities
// pay.
task_node* pool_core::take_by_priority(worker& w) noexcept {
  // A level in sight can come up empty-handed: its last tasks sit in another worker's inbox and a
  // steal lost its race, or another worker took them. Look again before serving a lower level,
  // so that a lost race does not let a low task start while high ones wait; a lost race means
  // another worker took a task, so this only repeats while others make progress.
  constexpr int looks = 8;
  for (int look = 0; look < looks; ++look) {
    unsigned waiting = global_.waiting_levels();
    for (const auto& other : workers_) {
      if (!other->inbox.empty_estimate()) waiting |= level_bit(other->inbox_level.load(std::memory_order_relaxed));
    }
    if (waiting == 0) return nullptr;
    const unsigned level = w.levels.pick(waiting);
    if (task_node* t = take_at_level(w, level)) {
      w.levels.started(level, waiting);
      return t;
    }
    for (int i = 0; i < look * 16; ++i) cpu_pause();  // a batch in transit lands in a few hundred ns
  }
  // Still nothing where we looked: one task of whatever is there, highest level first. Only one:
  // the level we could not serve may be a batch in transit in a worker that the operating system
  // descheduled (the exception pool.hpp states), and a whole batch of a lower level would then
  // start ahead of it.
  for (unsigned level = highest_level + 1; level-- > 0;) {
    if (task_node* t = take_at_level(w, level, /*one_task=*/true)) return t;
  }
  return nullptr;
}

// Within a level, oldest first: the tasks in inboxes were submitted before those still in the
// level's global queue.
task_node* pool_core::take_at_level(worker& w, unsigned level, bool one_task) noexcept {
  if (w.inbox_level.load(std::memory_order_relaxed) == level) {
    if (task_node* t = take_inbox(w)) return t;
  }
  if (task_node* t = steal_for(w, &worker::inbox, level)) return t;
  return take_global(w, level, one_task);
}

task_node* pool_core::steal_for(worker& w, chase_lev_deque<task_node> worker::*source, unsigned only_level) noexcept {
  const std::size_t n = workers_.size();
  if (n < 2) return nullptr;
  // xorshift: cheap, and different workers start their rounds at different victims.
  w.rng_state ^= w.rng_state << 13;
  w.rng_state ^= w.rng_state >> 7;
  w.rng_state ^= w.rng_state << 17;
  const std::size_t first = static_cast<std::size_t>(w.rng_state % n);
  for (std::size_t i = 0; i < n; ++i) {
    worker& victim = *workers_[(first + i) % n];
    if (&victim == &w) continue;
    if (only_level != any_level && victim.inbox_level.load(std::memory_order_relaxed) != only_level) continue;
    chase_lev_deque<task_node>& queue = victim.*source;
    // Relaxed reads of two indices: skip steal()'s fence for a victim with nothing to take.
    if (queue.empty_estimate()) continue;
    for (int attempt = 0; attempt <= lost_race_retries; ++attempt) {
      w.counters.steal_attempts.add();
      const steal_result<task_node> r = queue.steal();
      if (r.status == steal_status::success) {
        w.counters.steals.add();
        return r.item;
      }
      if (r.status == steal_status::empty) break;
    }
  }
  return nullptr;
}

bool pool_core::fair_take_due(worker& w) noexcept {
  if (--w.until_fair_take != 0) return false;
  w.until_fair_take = worker::fair_take_interval;
  return true;
}

task_node* pool_core::find_task(worker& w, bool look_at_global) noexcept {
  if (fair_take_due(w)) {
    if (task_node* t = take_oldest_submitted(w)) return t;
  }
  // The empty check first: pop on an empty deque still pays its full fence, and a worker whose
  // tasks come from the global queue would pay it for every task. Only we push, so "empty" here
  // cannot be wrong in the direction that matters.
  if (!w.deque.empty_estimate()) {
    if (task_node* t = w.deque.pop()) return t;
  }
  if (task_node* t = take_oldest_submitted(w, look_at_global)) return t;
  return steal_for(w, &worker::deque);
}

void pool_core::report_unhandled(std::exception_ptr error) noexcept {
  if (!options_.on_unhandled_exception) return;
  try {
    options_.on_unhandled_exception(std::move(error));
  } catch (...) {  // the handler's own failure must not take the worker down
  }
}

bool runs_task_of(const task_owner& owner) noexcept {
  for (const running_owner* r = innermost_owner; r != nullptr; r = r->outer) {
    if (r->owner == &owner) return true;
  }
  return false;
}

namespace {
// Whatever a run leaves suspended or blocked, work a layer above kept private on this thread
// during it is offered to the other workers once it returns (task_completion.hpp,
// after_this_run). One thread-local read for a run that kept none.
struct after_run_hook {
  after_run_hook() = default;
  after_run_hook(const after_run_hook&) = delete;
  after_run_hook& operator=(const after_run_hook&) = delete;
  ~after_run_hook() {
    if (after_this_run == nullptr) return;  // the common case: a read, no store
    const after_run_fn hook = std::exchange(after_this_run, nullptr);
    hook();
  }
};
}  // namespace

void pool_core::execute(worker& w, task_node* node, bool holds_slot) noexcept {
  const after_run_hook offer_kept_work;
  if (node->kind == task_kind::fork_join_job) {
    // Not a submitted task: not counted, holds no slot, owned by the spawner's stack frame.
    node->ops(node, task_op::run);
    publish_outcome(node, node->has_error() ? outcome_failed : outcome_succeeded);
    return;
  }
  if (node->kind == task_kind::internal_job) {
    // Internal: runs one task of a subpool (which counts that task itself), holds no slot.
    node->ops(node, task_op::run);
    release_task_node(node);
    return;
  }
  if (node->kind == task_kind::embedded_job) {
    // The run may end the life of the memory the node is in (a when_all child resuming its
    // parent, which destroys its frame): nothing after it.
    node->ops(node, task_op::run);
    return;
  }
  if (node->kind == task_kind::with_handle && !node->try_claim()) {
    // A worker waiting for it ran it already (run_if_unstarted): only our reference is left.
    release_task_node(node);
    return;
  }
  run_task(w, node, holds_slot);
}

bool pool_core::run_if_unstarted(worker& w, task_node* node) noexcept {
  // Only a task of this very pool (counted here, holding a slot here), and not a subpool's: that
  // would bypass the subpool's concurrency limit. The owner is read only while the task looks
  // unstarted: once claimed, it may finish and its group be destroyed. (A task that starts, ends
  // and whose group is destroyed between the load and the read is still possible in principle:
  // the node does not hold its pool itself any more.)
  if (node->kind != task_kind::with_handle || node->owner == nullptr ||
      (node->state.load(std::memory_order_acquire) & (claimed_bit | delayed_bit)) != 0) {
    return false;
  }
  if ((node->owner != &direct_tasks_ && node->owner->direct_pool() != this) || !node->try_claim()) return false;
  // A reference for run_task to drop; the queue that still holds the node keeps its own, and
  // drops it when it hands the node out and finds it claimed. Our caller's handle keeps the
  // count above zero meanwhile.
  node->refs.fetch_add(1, std::memory_order_relaxed);
  const after_run_hook offer_kept_work;
  run_task(w, node, /*holds_slot=*/true);
  return true;
}

void pool_core::run_task(worker& w, task_node* node, bool holds_slot) noexcept {
  // A task submitted straight to this pool has nobody else to tell: no virtual calls for it.
  task_owner* const owner = node->owner == &direct_tasks_ ? nullptr : node->owner;
  // Only a task with options (or whose callable takes a stop token) has extras to look at.
  task_extras* const extras = node->has_extras() ? node->extras() : nullptr;
  std::uint32_t skipped = outcome_pending;
  if (cancelling_.load(std::memory_order_relaxed) || (owner != nullptr && owner->skips_unstarted())) {
    skipped = outcome_cancelled;  // the pool's stop token fired, or its group failed or was stopped
  } else if (extras != nullptr) {
    skipped = extras->skip_outcome();  // its own stop token, or its deadline
  }
  if (skipped != outcome_pending) {
    if (extras != nullptr) extras->let_go();
    apply_noting_owner(node, task_op::cancel, owner);
    const bool expired = skipped == outcome_expired;
    (expired ? w.counters.expired : w.counters.cancelled).add();
    if (!node->normal_priority()) w.counters.skipped_at_level[level_of(node->priority())].add();
    if (owner != nullptr) expired ? owner->task_expired() : owner->task_skipped();
    if (holds_slot) release_slot();
    if (node->kind == task_kind::with_handle) publish_outcome(node, skipped);
    release_task_node(node);
    if (owner != nullptr) owner->task_released();  // the last touch: the owner may go now
    return;
  }

  w.counters.started.add();
  if (!node->normal_priority()) w.counters.started_at_level[level_of(node->priority())].add();
  if (owner != nullptr) owner->task_started();
  const std::uint64_t submitted_at = node->submit_time();
  std::uint64_t started_at = 0;
  if (submitted_at != 0) {
    started_at = steady_nanoseconds();
    w.queue_wait.record(started_at - submitted_at);
    w.queue_wait_at_level[level_of(node->priority())].record(started_at - submitted_at);
  }
  // A deferred task may be finished, and its node gone, by the time its run op returns.
  const bool completes_later = (node->flags & flag_completes_later) != 0;
  apply_noting_owner(node, task_op::run, owner);  // destroys the callable and its captures, whatever happens
  if (completes_later) return;  // complete_deferred does the rest
  if (submitted_at != 0) w.run_time.record(steady_nanoseconds() - started_at);
  end_run(&w, node, owner, extras, holds_slot);
  if (owner != nullptr) owner->task_released();  // the last touch: the owner may go now
}

void pool_core::end_run(worker* self, task_node* node, task_owner* owner, task_extras* extras, bool holds_slot) noexcept {
  if (extras != nullptr) extras->let_go();
  const bool failed = node->has_error();
  const bool error_taken = owner != nullptr && owner->task_ended(failed ? &node->error() : nullptr);
  if (failed && node->kind == task_kind::fire_and_forget) {
    // Nobody holds a handle to it: its group keeps it (error_taken) or the pool's handler gets it.
    std::exception_ptr error = node->take_error();
    if (!error_taken) report_unhandled(std::move(error));
  }
  // Count before publishing, so whoever observes the completion also sees it counted.
  if (self != nullptr) {
    (failed ? self->counters.failed : self->counters.succeeded).add();
  } else {
    (failed ? failed_elsewhere_ : succeeded_elsewhere_).fetch_add(1, std::memory_order_seq_cst);
  }
  if (holds_slot) release_slot();
  if (node->kind == task_kind::with_handle) publish_outcome(node, failed ? outcome_failed : outcome_succeeded);
  release_task_node(node);
}

void complete_deferred(task_node* node) noexcept { node->owner->counting_pool()->complete_deferred(node); }

void pool_core::complete_deferred(task_node* node) noexcept {
  // Any thread may finish a deferred task: one of our workers (counted there), or another
  // thread, which announces itself as cancel_unstarted does (the task counts as running, so
  // the pool is alive; once it counts as finished, stop_and_wait may return and the pool go).
  worker* const self = worker_of_this_thread();
  external_submissions::shard* const mine = self == nullptr ? &external_.of_this_thread() : nullptr;
  if (mine != nullptr) mine->inside.fetch_add(1, std::memory_order_seq_cst);
  task_owner* const owner = node->owner == &direct_tasks_ ? nullptr : node->owner;
  end_run(self, node, owner, node->has_extras() ? node->extras() : nullptr,
          /*holds_slot=*/node->owner->direct_pool() == this);
  // A drain waiter may have counted this task as unfinished just before: as in retire().
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) notify_drain();
  if (mine != nullptr) mine->inside.fetch_sub(1, std::memory_order_release);
  if (owner != nullptr) owner->task_released();  // the last touch: the owner may go now
}

// cancel() against a worker taking the task, a waiter running it (run_if_unstarted), the pool's
// own skip paths and other cancel() calls: whoever sets claimed_bit first decides, and exactly
// one does (try_claim). A worker that later takes the node from its queue finds it claimed and
// only drops the queue's reference (execute).
bool cancel_task(task_node* node) noexcept {
  const std::uint32_t before = node->claim();
  if ((before & claimed_bit) != 0) {
    // Started, finished, or skipped by someone else. A running task is asked to stop; its extras
    // live until the node's last release, and our handle holds a reference.
    const std::uint32_t state = node->state.load(std::memory_order_acquire);
    if ((state & outcome_mask) == outcome_pending && (state & extras_bit) != 0) node->extras()->own.request_stop();
    return false;
  }
  // The task was accepted and is unfinished: its owner and the pool that counts it are alive
  // (stop_and_wait, a group's wait and a subpool's destructor all wait for it).
  task_owner* const owner = node->owner;
  pool_core* const pool = owner->counting_pool();
  if ((before & delayed_bit) != 0) {
    switch (pool->timers().cancel_delayed(node)) {
      case timer_queue::delayed_cancel::cancelled:
        return true;
      case timer_queue::delayed_cancel::gone:
        return false;  // stop() cancelled it meanwhile
      case timer_queue::delayed_cancel::queued:
        break;  // it entered a queue after our claim: a worker will find it claimed
    }
  }
  pool->cancel_unstarted(node, owner);
  return true;
}

void pool_core::cancel_unstarted(task_node* node, task_owner* owner) noexcept {
  worker* const self = worker_of_this_thread();
  // From outside the pool we announce ourselves as a submitter does: once the task counts as
  // cancelled, stop_and_wait may return and the pool be destroyed while we still touch it
  // (shutdown waits for every announced thread to leave).
  external_submissions::shard* const mine = self == nullptr ? &external_.of_this_thread() : nullptr;
  if (mine != nullptr) mine->inside.fetch_add(1, std::memory_order_seq_cst);
  task_owner* const reported = owner == &direct_tasks_ ? nullptr : owner;
  // Tasks submitted through this pool's own admission hold a slot here; a subpool's hold theirs
  // in the subpool (released by task_skipped).
  const bool holds_slot = owner->direct_pool() == this;
  if (node->has_extras()) node->extras()->let_go();
  apply_noting_owner(node, task_op::cancel, reported);
  const priority level = node->priority();
  if (self != nullptr) {
    self->counters.cancelled.add();
    if (level != priority::normal) self->counters.skipped_at_level[level_of(level)].add();
  } else {
    // The level first: a metrics reader that sees the cancel sees it too (seq_cst below).
    if (level != priority::normal) cancelled_by_handles_at_level_[level_of(level)].fetch_add(1, std::memory_order_relaxed);
    cancelled_by_handles_.fetch_add(1, std::memory_order_seq_cst);
  }
  if (reported != nullptr) reported->task_skipped();
  if (holds_slot) release_slot();
  publish_outcome(node, outcome_cancelled);
  // A drain waiter may have counted this task as unfinished just before: as in retire().
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) notify_drain();
  if (mine != nullptr) mine->inside.fetch_sub(1, std::memory_order_release);
  if (reported != nullptr) reported->task_released();  // the last touch: the owner may go now
}

}  // namespace tidepool::detail
