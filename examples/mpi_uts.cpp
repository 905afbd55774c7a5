// The Unbalanced Tree Search across MPI ranks, a tidepool pool exploring inside each: the
// "MPI + threads" pattern, with work stealing at both levels. Counts the tree, then checks the
// count against a serial count (and, for T1, against the published one); exits 1 if they differ.
//
//   mpirun -np R examples/mpi_uts [--workers W] [--depth D] [--branching B] [--seed S]
//
// Defaults: tree T1 (depth 10, branching 4, seed 19: 4,130,071 nodes); --depth 12 or 13 makes a
// tree about 16 or 64 times larger. W: the cores mpirun bound the rank to, or, unbound, this
// node's cores shared among its ranks (mpi_ranks.hpp).
//
// Inside a rank. Unexplored nodes wait in the rank's bag. An explorer is a task of the rank's
// pool: it takes one node from the bag and explores its subtree depth first on a stack of its
// own. Every few nodes it looks whether the bag runs low (fewer nodes than workers) or another
// rank is asking for work; if so it moves the older half of its stack (the nodes nearest the
// root, the largest subtrees) into the bag and, if fewer explorers than workers run, starts one
// more. An explorer whose stack and the bag are both empty ends. So the pool's workers stay busy
// while the rank has work, and the bag always holds some to give away.
//
// Between ranks (only the main thread calls MPI: MPI_THREAD_FUNNELED, see mpi_ranks.hpp). The
// main thread polls for messages, and sleeps in between (0.1 ms, or 1 ms while the rank is busy)
// on a condition variable that the explorers signal. A rank with no work (bag empty, no
// explorer) is idle: it sends a steal request to one other rank at a time, round robin. A rank
// answers a request with half its bag; while its bag is empty but explorers run, it keeps the
// request and asks them to give (the answer goes out as soon as they have); an idle rank answers
// "no work", and the thief asks the next rank, pausing 0.5 ms after a whole round of refusals.
// Work moves only in answers: no static split, rank 0 starts with the root alone.
//
// Termination: Dijkstra and Safra's token algorithm (EWD998). The "basic" messages are answers
// that carry nodes; each rank counts those it sent minus those it received, and turns black when
// it receives one. Rank 0, when idle, sends a white token with count 0 around the ring; a rank
// passes it on only when idle, adding its count and blackening the token if the rank is black,
// then turns white. If it comes back white to a white, idle rank 0 and the counts sum to zero,
// no rank has work and none is in flight: rank 0 tells every rank to stop. Each rank then
// still answers requests (with "no work") until the answer to its own request came back and its
// own sends completed, and meets the others in a nonblocking barrier, serving until the barrier
// completes: then no message is left unreceived anywhere, and MPI_Finalize is clean.

#include <mpi.h>  // the MPI C API (meson defines OMPI_SKIP_MPICXX: no C++ bindings)
#include <tidepool/tidepool.hpp>

#include "mpi_ranks.hpp"
#include "uts.hpp"  // perf/uts.hpp: the tree of tidepool's benchmarks

#include <atomic>              // for std::atomic
#include <chrono>              // for std::chrono::microseconds, std::chrono::steady_clock
#include <condition_variable>  // for std::condition_variable
#include <cstddef>             // for std::byte, std::size_t
#include <cstdint>             // for std::int64_t
#include <cstdio>              // for std::printf, std::fprintf
#include <cstring>             // for std::memcpy
#include <iterator>            // for std::next
#include <list>                // for std::list
#include <mutex>               // for std::mutex, std::lock_guard, std::unique_lock
#include <span>                // for std::span, std::as_bytes
#include <type_traits>         // for std::is_trivially_copyable_v
#include <vector>              // for std::vector

namespace {

namespace uts = tidepool::perf::uts;

// Nodes travel between ranks as raw bytes: the ranks run the same program on the same kind of
// machine (as MPI codes usually assume; MPI_BYTE does no conversion).
static_assert(std::is_trivially_copyable_v<uts::node>);

// A rank's share of the tree: its bag, its explorers, and what they counted.
class rank_explorer {
 public:
  rank_explorer(const uts::geometric_fixed_tree& tree, std::size_t workers)
      : tree_(tree), workers_(workers), pool_(mpi_examples::rank_pool_options(workers, "uts")) {}

  // From the main thread: nodes that arrived (the root, or another rank's answer).
  void add(std::span<const uts::node> nodes) {
    std::size_t to_start = 0;
    {
      std::lock_guard lock(mutex_);
      bag_.insert(bag_.end(), nodes.begin(), nodes.end());
      bag_size_.store(bag_.size(), std::memory_order_relaxed);
      while (explorers_ < workers_ && to_start < bag_.size()) {
        ++explorers_;
        ++to_start;
      }
    }
    for (; to_start > 0; --to_start) start_explorer();
  }

  // From the main thread: half the bag (rounded up), the oldest nodes, for another rank.
  std::vector<uts::node> take_half() {
    std::lock_guard lock(mutex_);
    const std::size_t given = (bag_.size() + 1) / 2;
    std::vector<uts::node> half(bag_.begin(), bag_.begin() + static_cast<std::ptrdiff_t>(given));
    bag_.erase(bag_.begin(), bag_.begin() + static_cast<std::ptrdiff_t>(given));
    bag_size_.store(bag_.size(), std::memory_order_relaxed);
    return half;
  }

  // No node in the bag and no explorer running or about to: the rank has no work. Only add()
  // can change that.
  [[nodiscard]] bool idle() {
    std::lock_guard lock(mutex_);
    return bag_.empty() && explorers_ == 0;
  }

  [[nodiscard]] bool has_nodes_to_give() {
    std::lock_guard lock(mutex_);
    return !bag_.empty();
  }

  // Asks the explorers to fill the bag (another rank waits for work) or stops asking.
  void ask_to_give(bool asked) noexcept { other_rank_waits_.store(asked, std::memory_order_relaxed); }

  // Returns after `at_most`, or earlier if an explorer ended or gave nodes while asked to.
  void wait_for_news(std::chrono::microseconds at_most) {
    std::unique_lock lock(mutex_);
    news_cv_.wait_for(lock, at_most, [&] { return news_; });
    news_ = false;
  }

  // What the ended explorers counted: the rank's total once idle() holds.
  [[nodiscard]] uts::tree_size counted() {
    std::lock_guard lock(mutex_);
    return counted_;
  }

 private:
  static constexpr int look_every = 32;  // nodes between two looks at the bag; a guess, cheap either way

  void start_explorer() {
    pool_.go([this]() noexcept { explore(); });
  }

  // A task of the pool. noexcept: a failure here would lose nodes, so it ends the program.
  void explore() noexcept {
    std::vector<uts::node> stack;
    uts::tree_size counted{0, 0, 0};
    int since_look = 0;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (bag_.empty()) {
          // Under the mutex, with the bag seen empty: idle() never sees this explorer gone while
          // nodes it gave are still in the bag unnoticed.
          --explorers_;
          counted_ = counted_ + counted;
          news_ = true;
          news_cv_.notify_one();
          return;
        }
        stack.push_back(bag_.back());
        bag_.pop_back();
        bag_size_.store(bag_.size(), std::memory_order_relaxed);
      }
      while (!stack.empty()) {
        const uts::node node = stack.back();
        stack.pop_back();
        const int children = uts::child_count(tree_, node);
        counted = counted + uts::tree_size::of_node(node, children);
        for (int i = 0; i < children; ++i) stack.push_back(uts::child(node, i));
        if (++since_look == look_every) {
          since_look = 0;
          // Relaxed: both flags are hints; a stale one only delays a gift or makes an extra one,
          // and give() decides under the mutex.
          const bool asked = other_rank_waits_.load(std::memory_order_relaxed);
          if (stack.size() > 1 && (asked || bag_size_.load(std::memory_order_relaxed) < workers_)) give(stack, asked);
        }
      }
    }
  }

  // Moves the older half of `stack` into the bag; starts an explorer if one is missing.
  void give(std::vector<uts::node>& stack, bool asked) {
    const auto given = static_cast<std::ptrdiff_t>(stack.size() / 2);
    bool start = false;
    {
      std::lock_guard lock(mutex_);
      bag_.insert(bag_.end(), stack.begin(), stack.begin() + given);
      bag_size_.store(bag_.size(), std::memory_order_relaxed);
      if (explorers_ < workers_) {
        ++explorers_;
        start = true;
      }
      if (asked) {
        news_ = true;
        news_cv_.notify_one();
      }
    }
    stack.erase(stack.begin(), stack.begin() + given);
    if (start) start_explorer();
  }

  const uts::geometric_fixed_tree tree_;
  const std::size_t workers_;

  std::mutex mutex_;
  std::vector<uts::node> bag_;                 // guarded by mutex_; oldest first
  std::size_t explorers_ = 0;                  // guarded by mutex_: started and not yet ended
  uts::tree_size counted_{0, 0, 0};            // guarded by mutex_: by the explorers that ended
  bool news_ = false;                          // guarded by mutex_
  std::condition_variable news_cv_;
  std::atomic<std::size_t> bag_size_{0};       // bag_.size(), for explorers to read without the mutex
  std::atomic<bool> other_rank_waits_{false};

  // Last: destroyed first, so its workers are joined before anything they use goes away.
  tidepool::pool pool_;
};

enum tag : int { steal_request = 1, answer = 2, token = 3, stop = 4 };

struct token_value {
  std::int64_t count;  // sum of the (sent − received) work answers of the ranks passed
  int black;           // some rank passed received work since the token last left rank 0
};

// The main thread's side of a rank: messages, stealing, termination. Only it calls MPI.
class rank_messenger {
 public:
  rank_messenger(rank_explorer& explorer, int rank, int size) : explorer_(explorer), rank_(rank), size_(size) {}

  // Until the tree is counted everywhere and no message is left in flight.
  void run() {
    while (!finished()) {
      receive_all();
      answer_thieves();
      complete_sends();
      if (!stopping_) {
        if (explorer_.idle()) act_when_idle();
      } else if (request_to_ < 0 && sends_.empty() && barrier_ == MPI_REQUEST_NULL) {
        MPI_Ibarrier(MPI_COMM_WORLD, &barrier_);
      }
      // Polling costs the explorers a context switch each time. While this rank works and owes
      // and awaits nothing, only a new request can come, and it may wait a millisecond (a few
      // per run); an idle rank looks ten times as often for the answer or token it awaits.
      const bool busy = !stopping_ && thieves_.empty() && request_to_ < 0 && !explorer_.idle();
      explorer_.wait_for_news(std::chrono::microseconds(busy ? 1000 : 100));
    }
  }

  [[nodiscard]] std::int64_t answers_received_with_work() const noexcept { return steals_; }

 private:
  bool finished() {
    if (barrier_ == MPI_REQUEST_NULL) return false;
    int done = 0;
    MPI_Test(&barrier_, &done, MPI_STATUS_IGNORE);
    return done != 0;
  }

  void receive_all() {
    for (;;) {
      int waiting = 0;
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &waiting, &status);
      if (waiting == 0) return;
      int bytes = 0;
      MPI_Get_count(&status, MPI_BYTE, &bytes);
      std::vector<std::byte> message(static_cast<std::size_t>(bytes));
      MPI_Recv(message.data(), bytes, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      switch (status.MPI_TAG) {
        case steal_request: thieves_.push_back(status.MPI_SOURCE); break;
        case answer: take_answer(message); break;
        case token: token_arrived(message); break;
        case stop: stopping_ = true; break;
        default: break;
      }
    }
  }

  void take_answer(const std::vector<std::byte>& message) {
    request_to_ = -1;
    std::vector<uts::node> nodes(message.size() / sizeof(uts::node));
    if (nodes.empty()) {
      refusals_in_a_row_ += 1;
      if (refusals_in_a_row_ >= size_ - 1) {  // everyone refused: pause before the next round
        refusals_in_a_row_ = 0;
        next_request_ = std::chrono::steady_clock::now() + std::chrono::microseconds(500);
      }
      return;
    }
    if (stopping_) {  // cannot happen: termination means no work was anywhere
      std::fprintf(stderr, "rank %d: work arrived after termination was detected\n", rank_);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    std::memcpy(nodes.data(), message.data(), message.size());
    refusals_in_a_row_ = 0;
    work_balance_ -= 1;
    black_ = true;
    steals_ += 1;
    explorer_.add(nodes);
  }

  // A request is answered with nodes as soon as the bag has some, and with "no work" once the
  // rank is idle; in between it waits, and the explorers are asked to give.
  void answer_thieves() {
    while (!thieves_.empty()) {
      if (explorer_.has_nodes_to_give()) {
        const std::vector<uts::node> nodes = explorer_.take_half();
        if (!nodes.empty()) {  // the explorers may have emptied the bag since
          send(thieves_.front(), answer, std::as_bytes(std::span(nodes)));
          work_balance_ += 1;
          thieves_.erase(thieves_.begin());
          continue;
        }
      }
      if (!explorer_.idle()) break;
      send(thieves_.front(), answer, {});
      thieves_.erase(thieves_.begin());
    }
    explorer_.ask_to_give(!thieves_.empty());
  }

  void act_when_idle() {
    if (size_ == 1) {
      stopping_ = true;
      return;
    }
    if (request_to_ < 0 && std::chrono::steady_clock::now() >= next_request_) {
      request_to_ = next_victim_;
      next_victim_ = (next_victim_ + 1) % size_;
      if (next_victim_ == rank_) next_victim_ = (next_victim_ + 1) % size_;
      send(request_to_, steal_request, {});
    }
    if (rank_ == 0 && !token_out_) {
      if (token_back_) {
        token_back_ = false;
        if (!returned_.black && !black_ && returned_.count + work_balance_ == 0) {
          for (int other = 1; other < size_; ++other) send(other, stop, {});
          stopping_ = true;
          return;
        }
      }
      black_ = false;
      send_token({0, 0});
      token_out_ = true;
    } else if (rank_ != 0 && token_here_) {
      token_here_ = false;
      send_token({held_.count + work_balance_, held_.black != 0 || black_ ? 1 : 0});
      black_ = false;
    }
  }

  void token_arrived(const std::vector<std::byte>& message) {
    token_value value;
    std::memcpy(&value, message.data(), sizeof value);
    if (rank_ == 0) {
      token_out_ = false;
      token_back_ = true;
      returned_ = value;
    } else {
      token_here_ = true;
      held_ = value;
    }
  }

  void send_token(const token_value& value) {
    send((rank_ + 1) % size_, token, std::as_bytes(std::span(&value, 1)));
  }

  // Nonblocking, so that two ranks sending to each other never wait on each other; the buffer
  // lives in sends_ until the send completes.
  void send(int to, int what, std::span<const std::byte> bytes) {
    outgoing& out = sends_.emplace_back();
    out.bytes.assign(bytes.begin(), bytes.end());
    MPI_Isend(out.bytes.data(), static_cast<int>(out.bytes.size()), MPI_BYTE, to, what, MPI_COMM_WORLD, &out.request);
  }

  void complete_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      it = done != 0 ? sends_.erase(it) : std::next(it);
    }
  }

  struct outgoing {
    std::vector<std::byte> bytes;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  rank_explorer& explorer_;
  const int rank_;
  const int size_;

  std::vector<int> thieves_;  // ranks whose requests wait for an answer, oldest first
  std::list<outgoing> sends_;
  int request_to_ = -1;       // the rank our request went to, until it answers
  int next_victim_ = (rank_ + 1) % size_;
  int refusals_in_a_row_ = 0;
  std::chrono::steady_clock::time_point next_request_{};
  std::int64_t steals_ = 0;

  // Dijkstra–Safra.
  std::int64_t work_balance_ = 0;  // work answers sent − received
  bool black_ = false;
  bool token_here_ = false;        // ranks other than 0: holding the token, in held_
  token_value held_{0, 0};
  bool token_out_ = false;         // rank 0: the token is going round
  bool token_back_ = false;        // rank 0: it came back, as returned_
  token_value returned_{0, 0};

  bool stopping_ = false;
  MPI_Request barrier_ = MPI_REQUEST_NULL;
};

constexpr const char* usage = "mpi_uts [--workers W] [--depth D] [--branching B] [--seed S]";

}  // namespace

int main(int argc, char** argv) {
  mpi_examples::mpi_session mpi(argc, argv);
  const mpi_examples::arguments args(argc, argv, {"--workers", "--depth", "--branching", "--seed"}, usage, mpi.rank());
  const uts::geometric_fixed_tree tree{static_cast<std::int32_t>(args.number("--seed", uts::t1.root_seed)),
                                       static_cast<int>(args.number("--depth", uts::t1.depth_limit)),
                                       args.number("--branching", uts::t1.branching)};
  const double workers_asked = args.number("--workers", 0);
  if (workers_asked < 0 || workers_asked > 1024 || tree.depth_limit < 0 || tree.branching <= 0) {
    mpi_examples::arguments::fail(mpi.rank(), usage, "out of range: workers 0..1024, depth >= 0, branching > 0");
  }
  const std::size_t workers = mpi_examples::workers_per_rank(static_cast<std::size_t>(workers_asked));

  uts::tree_size local{0, 0, 0};
  std::int64_t steals = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  const mpi_examples::stopwatch parallel_time;
  {
    rank_explorer explorer(tree, workers);
    rank_messenger messenger(explorer, mpi.rank(), mpi.size());
    if (mpi.rank() == 0) {
      const uts::node root = uts::root(tree.root_seed);
      explorer.add(std::span(&root, 1));
    }
    messenger.run();
    local = explorer.counted();
    steals = messenger.answers_received_with_work();
  }
  const double parallel_seconds = parallel_time.wall_seconds();
  const double cpu_seconds = parallel_time.cpu_seconds();
  double cpu_seconds_everywhere = 0;
  MPI_Reduce(&cpu_seconds, &cpu_seconds_everywhere, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  std::int64_t sums[3] = {local.nodes, local.leaves, steals};
  std::int64_t totals[3] = {0, 0, 0};
  int depth = 0;
  MPI_Reduce(sums, totals, 3, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(&local.depth, &depth, 1, MPI_INT, MPI_MAX, 0, MPI_COMM_WORLD);
  std::vector<std::int64_t> per_rank(static_cast<std::size_t>(mpi.size()));
  MPI_Gather(&local.nodes, 1, MPI_INT64_T, per_rank.data(), 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  if (mpi.rank() != 0) return 0;

  const uts::tree_size counted{totals[0], totals[1], depth};
  const mpi_examples::stopwatch serial_time;
  const uts::tree_size serial = uts::count_serial(tree, uts::root(tree.root_seed));
  const bool is_t1 = tree.root_seed == uts::t1.root_seed && tree.depth_limit == uts::t1.depth_limit &&
                     tree.branching == uts::t1.branching;

  std::printf("uts depth %d, branching %g, seed %d: %lld nodes, %lld leaves, depth %d\n", tree.depth_limit,
              tree.branching, static_cast<int>(tree.root_seed), static_cast<long long>(counted.nodes),
              static_cast<long long>(counted.leaves), counted.depth);
  std::printf("%d ranks x %zu workers: %.1f ms, cpu %.1f ms (%lld steals between ranks; nodes per rank:", mpi.size(),
              workers, parallel_seconds * 1e3, cpu_seconds_everywhere * 1e3, static_cast<long long>(totals[2]));
  for (const std::int64_t n : per_rank) std::printf(" %lld", static_cast<long long>(n));
  std::printf(")\nserial: %.1f ms, cpu %.1f ms, %lld nodes\n", serial_time.wall_seconds() * 1e3, serial_time.cpu_seconds() * 1e3,
              static_cast<long long>(serial.nodes));

  bool right = counted == serial;
  if (is_t1 && !(serial == uts::t1_size)) {
    std::printf("the serial count of T1 differs from the published 4,130,071 nodes\n");
    right = false;
  }
  if (!(counted == serial)) std::printf("WRONG: the ranks counted another tree than the serial count\n");
  return right ? 0 : 1;
}
