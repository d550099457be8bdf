// Metrics every process exports: resident memory, build information (version, backend, model
// fingerprint, component), read at scrape time.
#ifndef JAMBA_METRICS_PROCESS_METRICS_H_
#define JAMBA_METRICS_PROCESS_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "prometheus/collectable.h"

namespace jamba {

struct BuildInfo {
  std::string component;  // "gateway", "layer_worker", "expert_worker"
  std::string backend;    // "cpu", "cuda"
  std::string model_fingerprint;
};

// jamba_build_info (value 1) and jamba_process_resident_memory_bytes, read at scrape time;
// `info` is asked at every scrape (the model fingerprint may be known only after loading).
std::shared_ptr<prometheus::Collectable> ProcessMetrics(std::function<BuildInfo()> info);

// The process's resident set size in bytes (0 if /proc is unreadable).
int64_t ResidentMemoryBytes();

}  // namespace jamba

#endif  // JAMBA_METRICS_PROCESS_METRICS_H_
