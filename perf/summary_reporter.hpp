#pragma once
// A console reporter that also keeps the median of one rate counter per (configuration,
// implementation), and prints them at the end as a table with tidepool's ratio to each peer.
// Benchmarks are named "<group>/<implementation>" and labelled with their configuration.

#include <benchmark/benchmark.h>

#include <cstdio>   // for std::printf
#include <map>      // for std::map
#include <string>   // for std::string
#include <utility>  // for std::move
#include <vector>   // for std::vector

namespace tidepool::perf {

class summary_reporter : public benchmark::ConsoleReporter {
 public:
  summary_reporter(std::string counter, std::string unit) : counter_(std::move(counter)), unit_(std::move(unit)) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Aggregate || run.aggregate_name != "median") continue;
      const auto it = run.counters.find(counter_);
      if (it == run.counters.end()) continue;
      const std::string& name = run.run_name.function_name;  // "<group>/<implementation>"
      const std::string implementation = name.substr(name.find('/') + 1);
      if (!medians_[run.report_label].contains(implementation) && !seen(implementation)) {
        implementations_.push_back(implementation);
      }
      medians_[run.report_label][implementation] = it->second.value;
    }
  }

  // Prints one row per configuration: each implementation's median, then tidepool ÷ each peer.
  void print_table() const {
    std::printf("\nMedian %s, %s (ratio = tidepool / peer; > 1 means tidepool is faster):\n", counter_.c_str(),
                unit_.c_str());
    std::printf("%-10s", "config");
    for (const auto& impl : implementations_) std::printf(" %14s", impl.c_str());
    for (const auto& impl : implementations_) {
      if (impl != "tidepool") std::printf(" %12s", ("vs " + impl.substr(0, 9)).c_str());
    }
    std::printf("\n");
    for (const auto& [config, values] : medians_) {
      std::printf("%-10s", config.c_str());
      for (const auto& impl : implementations_) std::printf(" %14.2f", value(values, impl));
      const double ours = value(values, "tidepool");
      for (const auto& impl : implementations_) {
        if (impl == "tidepool") continue;
        const double theirs = value(values, impl);
        if (theirs > 0 && ours > 0) {
          std::printf(" %11.2fx", ours / theirs);
        } else {
          std::printf(" %12s", "n/a");
        }
      }
      std::printf("\n");
    }
  }

 private:
  bool seen(const std::string& implementation) const {
    for (const auto& i : implementations_) {
      if (i == implementation) return true;
    }
    return false;
  }
  static double value(const std::map<std::string, double>& values, const std::string& impl) {
    const auto it = values.find(impl);
    return it == values.end() ? 0.0 : it->second;
  }

  std::string counter_;
  std::string unit_;
  std::vector<std::string> implementations_;
  std::map<std::string, std::map<std::string, double>> medians_;
};

}  // namespace tidepool::perf
