// Device memory gauges of a process whose backend has its own memory (a GPU):
// jamba_device_memory_used_bytes and jamba_device_memory_total_bytes, labelled with the
// backend's device name ("cuda:0"), read at scrape time. A CPU backend adds no series: the
// process's resident memory (jamba_process_resident_memory_bytes) covers it.
#ifndef JAMBA_METRICS_DEVICE_METRICS_H_
#define JAMBA_METRICS_DEVICE_METRICS_H_

#include "kernels/backend.h"
#include "metrics/telemetry.h"

namespace jamba {

// `backend` must outlive `telemetry`'s serving.
void AddDeviceMemoryMetrics(Telemetry& telemetry, const Backend* backend);

}  // namespace jamba

#endif  // JAMBA_METRICS_DEVICE_METRICS_H_
