#pragma once
// The shared main() of the comparison programs: a `--quick` mode and one size flag on top of
// Google Benchmark's own flags, 5 repetitions by default (3 in quick mode), and a summary table
// of medians and ratios printed after the usual output. main_options: for programs that register
// their benchmarks once the flags are known, or shorten each repetition in quick mode.

#include <benchmark/benchmark.h>

#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::int64_t
#include <cstdio>   // for std::printf
#include <cstring>  // for std::strcmp, std::strncmp, std::strlen
#include <string>   // for std::string, std::stoull
#include <vector>   // for std::vector

#include "summary_reporter.hpp"

namespace tidepool::perf {

struct size_flag {
  const char* prefix;  // e.g. "--items="
  std::size_t* value;
  std::size_t quick_value;
  const char* what;  // printed before the run: "%zu items per run"
};

// What a program may add; the defaults change nothing.
struct main_options {
  // Called once the flags are read, by programs whose set of benchmarks depends on them.
  void (*register_benchmarks)(bool quick) = nullptr;
  // --benchmark_min_time in quick mode, unless given (seconds, e.g. "0.05").
  const char* quick_min_time = nullptr;
};

// Registers `name` once per thread count: 1, 2, 4, ... below max_threads, and max_threads (only
// max_threads in quick mode); the argument is named T. Every repetition reaches the JSON, the
// console shows median, mean, stddev and cv.
template <class Function>
void register_per_thread_count(const std::string& name, Function function, std::size_t max_threads, bool quick) {
  benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(name.c_str(), function);
  b->ArgName("T");
  if (!quick) {
    for (std::size_t t = 1; t < max_threads; t *= 2) b->Arg(static_cast<std::int64_t>(t));
  }
  b->Arg(static_cast<std::int64_t>(max_threads));
  b->UseManualTime()->Unit(benchmark::kMillisecond)->DisplayAggregatesOnly(true);
}

inline int benchmark_main(int argc, char** argv, size_flag size, summary_reporter& reporter,
                          main_options options = {}) {
  std::vector<char*> args;
  bool quick = false;
  bool repetitions_given = false;
  bool min_time_given = false;
  bool size_given = false;
  const std::size_t prefix_length = std::strlen(size.prefix);
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strncmp(argv[i], size.prefix, prefix_length) == 0) {
      *size.value = std::stoull(argv[i] + prefix_length);
      size_given = true;
    } else {
      repetitions_given |= std::strncmp(argv[i], "--benchmark_repetitions", 23) == 0;
      min_time_given |= std::strncmp(argv[i], "--benchmark_min_time", 20) == 0;
      args.push_back(argv[i]);
    }
  }
  if (quick && !size_given) *size.value = size.quick_value;
  std::string repetitions = quick ? "--benchmark_repetitions=3" : "--benchmark_repetitions=5";
  if (!repetitions_given) args.insert(args.begin() + 1, repetitions.data());
  std::string min_time = "--benchmark_min_time=";
  if (quick && options.quick_min_time != nullptr && !min_time_given) {
    min_time += options.quick_min_time;
    args.insert(args.begin() + 1, min_time.data());
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  if (options.register_benchmarks != nullptr) options.register_benchmarks(quick);

  std::printf(size.what, *size.value);
  std::printf("\n");
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  reporter.print_table();
  return 0;
}

}  // namespace tidepool::perf
