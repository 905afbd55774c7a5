#pragma once
// What examples/mpi_uts.cpp and examples/mpi_matmul.cpp share: MPI started at the thread level
// they need, how many workers each rank's pool gets, and their "--name value" arguments.
//
// Thread level: MPI_THREAD_FUNNELED. In both examples only the main thread, the one that called
// MPI_Init_thread, ever calls MPI; the pool's workers compute and never communicate. That is all
// FUNNELED promises, and it spares the locking that Open MPI adds to every call under
// MPI_THREAD_MULTIPLE.

#include <mpi.h>  // the MPI C API (meson defines OMPI_SKIP_MPICXX: no C++ bindings)
#include <sched.h>  // for sched_getaffinity, CPU_COUNT
#include <time.h>   // for clock_gettime, CLOCK_PROCESS_CPUTIME_ID
#include <tidepool/pool.hpp>  // for tidepool::pool_options

#include <cstddef>    // for std::size_t
#include <cstdio>     // for std::fprintf
#include <cstdlib>    // for std::strtod, std::exit
#include <cstring>    // for std::strcmp
#include <initializer_list>  // for std::initializer_list
#include <string>     // for std::string
#include <thread>     // for std::thread::hardware_concurrency

namespace mpi_examples {

// MPI_Init_thread on construction, MPI_Finalize on destruction. Ends the program (MPI_Abort) if
// the library cannot give MPI_THREAD_FUNNELED.
class mpi_session {
 public:
  mpi_session(int& argc, char**& argv) {
    int provided = MPI_THREAD_SINGLE;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    if (provided < MPI_THREAD_FUNNELED) {
      std::fprintf(stderr, "MPI gives thread level %d, below MPI_THREAD_FUNNELED\n", provided);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  ~mpi_session() { MPI_Finalize(); }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
};

// `requested` if not 0. Else the cores this process may run on, if mpirun bound it to fewer
// than the machine has (--bind-to core, --map-by ...:PE=n): a rank bound to one core gets one
// worker. Else, unbound, the machine's cores shared out among the ranks running on it (at least
// 1), so that ranks × workers fills a node without oversubscribing it.
inline std::size_t workers_per_rank(std::size_t requested) {
  if (requested != 0) return requested;
  const std::size_t cores = std::thread::hardware_concurrency();
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    const auto bound_to = static_cast<std::size_t>(CPU_COUNT(&allowed));
    if (bound_to > 0 && bound_to < cores) return bound_to;
  }
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int ranks_here = 1;
  MPI_Comm_size(node, &ranks_here);
  MPI_Comm_free(&node);
  const std::size_t share = cores / static_cast<std::size_t>(ranks_here);
  return share > 0 ? share : 1;
}

// Wall-clock time and this process's CPU time (all its threads) since construction. The CPU
// time shows how much of the machine a run got: on a shared one, less than wall time × cores.
class stopwatch {
 public:
  stopwatch() : wall_start_(MPI_Wtime()), cpu_start_(process_cpu_seconds()) {}
  [[nodiscard]] double wall_seconds() const { return MPI_Wtime() - wall_start_; }
  [[nodiscard]] double cpu_seconds() const { return process_cpu_seconds() - cpu_start_; }

 private:
  static double process_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
  }
  double wall_start_;
  double cpu_start_;
};

inline tidepool::pool_options rank_pool_options(std::size_t workers, const char* name) {
  tidepool::pool_options options;
  options.workers = workers;
  options.name = name;
  return options;
}

// Arguments of the form "--name value", each name one of `known`. Anything else is reported
// (by rank 0) and ends the program with status 2 on every rank.
class arguments {
 public:
  arguments(int argc, char** argv, std::initializer_list<const char*> known, const char* usage, int rank)
      : argc_(argc), argv_(argv) {
    for (int i = 1; i < argc; i += 2) {
      bool found = false;
      for (const char* name : known) found = found || std::strcmp(argv[i], name) == 0;
      if (!found || i + 1 >= argc) fail(rank, usage, std::string("unknown or incomplete argument ") + argv[i]);
    }
  }

  // The value after `name`, or `otherwise` if it is absent.
  [[nodiscard]] double number(const char* name, double otherwise) const {
    for (int i = 1; i + 1 < argc_; i += 2) {
      if (std::strcmp(argv_[i], name) == 0) return std::strtod(argv_[i + 1], nullptr);
    }
    return otherwise;
  }

  [[noreturn]] static void fail(int rank, const char* usage, const std::string& why) {
    if (rank == 0) std::fprintf(stderr, "%s\nusage: %s\n", why.c_str(), usage);
    MPI_Finalize();
    std::exit(2);
  }

 private:
  int argc_;
  char** argv_;
};

}  // namespace mpi_examples
