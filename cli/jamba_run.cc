// jamba-run: generate a completion from a Hugging Face checkpoint folder in one process.
// Exit status: 0 success, 1 a runtime error (bad checkpoint, bad token ids, ...), 2 bad usage.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cli/flag_parser.h"
#include "cli/sampling_flags.h"
#include "common/npy.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/generator.h"
#include "engine/tokenizer/tokenizer.h"
#include "kernels/backend_factory.h"
#include "kernels/cpu_threads.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

struct Options {
  std::string model;
  std::string prompt;
  std::vector<int32_t> token_ids;
  bool json = false;
  bool quiet = false;
  bool no_special_tokens = false;
  std::string dump_logits;
  std::string weights = "f32";
  std::string device = "cpu";
  std::string matmul_precision = "f32";
  bool int8_experts = false;
  int32_t threads = 0;
  int32_t prefill_chunk = 256;
  int64_t max_context = 0;
  SamplingParams sampling;
};

nlohmann::json LogprobJson(const TokenLogprob& lp) {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& [id, value] : lp.top) top.push_back({{"token_id", id}, {"logprob", value}});
  return {{"token_id", lp.token}, {"logprob", lp.logprob}, {"top", top}};
}

int Fail(const absl::Status& status) {
  std::cerr << "jamba-run: " << status.message() << "\n";
  return 1;
}

int Run(int argc, char** argv) {
  Options o;
  FlagParser flags(
      "jamba-run --model DIR (--prompt TEXT | --token-ids ID,ID,...) [options]",
      "Runs a Jamba, Mamba, Falcon-Mamba or Mixtral checkpoint (a Hugging Face folder:\n"
      "config.json, *.safetensors, tokenizer.json) on the CPU or a GPU and prints the completion "
      "as it\n"
      "is generated. The prompt is tokenized with the folder's tokenizer.json, adding BOS as its\n"
      "tokenizer_config.json says; --token-ids feeds ids as they are and needs no tokenizer.");
  const std::string in = "Input";
  flags.String("model", &o.model, "checkpoint folder (required)", in, "DIR");
  flags.String("prompt", &o.prompt, "prompt text", in);
  flags.Custom(
      "token-ids", [&o](absl::string_view v) { return ParseIdList(v, "token-ids", &o.token_ids); },
      "ID,ID,...", "prompt as token ids instead of text", in);
  flags.Bool("no-special-tokens", &o.no_special_tokens, "tokenize --prompt without adding BOS/EOS",
             in);
  AddSamplingFlags(&flags, &o.sampling);
  const std::string out = "Output";
  flags.Bool("json", &o.json,
             "print one JSON object {token_ids, text, finish_reason, usage, ...} instead of "
             "streaming text",
             out);
  flags.String("dump-logits", &o.dump_logits,
               "write the logits of every prompt position to this .npy file "
               "(float32, shape [prompt_tokens, vocab])",
               out, "FILE.npy");
  flags.Bool("quiet", &o.quiet, "no statistics on stderr", out);
  const std::string eng = "Engine";
  flags.String("weights", &o.weights,
               "dtype of the weight matrices in memory: f32 or bf16 "
               "(accumulation is f32 either way)",
               eng, "f32|bf16");
  flags.String("device", &o.device, kDeviceFlagHelp, eng, "cpu|cuda[:N]");
  flags.String("matmul-precision", &o.matmul_precision, kMatMulPrecisionFlagHelp, eng, "f32|bf16");
  flags.Bool("int8-experts", &o.int8_experts,
             "quantise MoE expert matrices to int8 at load (per-row scales, as ExpertsInt8)", eng);
  flags.Int32("threads", &o.threads, "CPU threads; 0 = all cores", eng);
  flags.Int32("prefill-chunk", &o.prefill_chunk, "prompt tokens per forward step", eng);
  flags.Int("max-context", &o.max_context,
            "longest sequence; 0 = the model's max_position_embeddings", eng);

  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-run")) return *exit;
  if (o.model.empty()) {
    std::cerr << "jamba-run: --model DIR is required (see --help)\n";
    return 2;
  }
  if (flags.Seen("prompt") == flags.Seen("token-ids")) {
    std::cerr << "jamba-run: give exactly one of --prompt and --token-ids (see --help)\n";
    return 2;
  }
  if (o.weights != "f32" && o.weights != "bf16") {
    std::cerr << "jamba-run: --weights must be f32 or bf16, got '" << o.weights << "'\n";
    return 2;
  }
  if (o.threads < 0) {
    std::cerr << "jamba-run: --threads must be >= 0\n";
    return 2;
  }
  if (absl::Status s = CheckDeviceName(o.device); !s.ok()) {
    std::cerr << "jamba-run: --device: " << s.message() << "\n";
    return 2;
  }
  absl::StatusOr<MatMulPrecision> precision = ParseMatMulPrecision(o.matmul_precision);
  if (!precision.ok()) {
    std::cerr << "jamba-run: --matmul-precision: " << precision.status().message() << "\n";
    return 2;
  }
  SetCpuThreads(o.threads);

  std::unique_ptr<Tokenizer> tokenizer;
  {
    auto tok = Tokenizer::Load(o.model);
    if (tok.ok()) {
      tokenizer = *std::move(tok);
    } else if (flags.Seen("prompt") || !absl::IsNotFound(tok.status())) {
      // Text needs the tokenizer; a broken tokenizer is an error even with --token-ids.
      return Fail(tok.status());
    }
  }
  if (flags.Seen("prompt")) {
    auto ids = tokenizer->Encode(o.prompt, !o.no_special_tokens);
    if (!ids.ok()) return Fail(ids.status());
    o.token_ids = *std::move(ids);
    if (o.token_ids.empty()) return Fail(absl::InvalidArgumentError("--prompt: no tokens"));
  }

  absl::StatusOr<std::unique_ptr<Backend>> created =
      CreateBackend(o.device, BackendOptions{.matmul_precision = *precision});
  if (!created.ok()) return Fail(created.status());
  std::unique_ptr<Backend> backend = *std::move(created);
  EngineOptions eo;
  eo.weight_dtype = o.weights == "bf16" ? DType::kBF16 : DType::kF32;
  eo.int8_experts = o.int8_experts;
  eo.max_sequences = 1;
  eo.max_context = o.max_context;
  const auto t_load = std::chrono::steady_clock::now();
  auto engine = Engine::Create(o.model, eo, backend.get());
  if (!engine.ok()) return Fail(engine.status());

  GenerateRequest request;
  request.prompt = o.token_ids;
  request.params = o.sampling;
  request.prefill_chunk = o.prefill_chunk;
  request.keep_prompt_logits = !o.dump_logits.empty();

  const auto t_start = std::chrono::steady_clock::now();
  auto t_first = t_start;
  bool first = true;
  if (!o.json && flags.Seen("prompt")) std::cout << o.prompt << std::flush;
  auto on_token = [&](const TokenEvent& event) {
    if (first) {
      t_first = std::chrono::steady_clock::now();
      first = false;
    }
    if (!o.json && !event.text.empty()) std::cout << event.text << std::flush;
  };
  auto result = Generate(engine->get(), tokenizer.get(), request, on_token);
  if (!result.ok()) {
    if (!o.json) std::cout << std::endl;
    return Fail(result.status());
  }
  const auto t_end = std::chrono::steady_clock::now();

  if (!o.dump_logits.empty()) {
    absl::Status s = WriteNpyF32(o.dump_logits, result->prompt_logits.data(),
                                 {result->prompt_tokens, (*engine)->vocab_size()});
    if (!s.ok()) return Fail(s);
  }
  const int64_t generated = static_cast<int64_t>(result->token_ids.size());
  if (o.json) {
    nlohmann::json j;
    j["token_ids"] = result->token_ids;
    j["text"] = result->text;
    j["finish_reason"] = FinishReasonName(result->finish_reason);
    j["usage"] = {{"prompt_tokens", result->prompt_tokens}, {"completion_tokens", generated}};
    if (o.sampling.logprobs >= 0) {
      j["logprobs"] = nlohmann::json::array();
      for (const auto& lp : result->logprobs) j["logprobs"].push_back(LogprobJson(lp));
    }
    if (o.sampling.prompt_logprobs >= 0) {
      j["prompt_logprobs"] = nlohmann::json::array();
      for (const auto& lp : result->prompt_logprobs) {
        j["prompt_logprobs"].push_back(LogprobJson(lp));
      }
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
  }
  std::cout << std::flush;  // the statistics below go to stderr: keep them after the text
  if (!o.quiet) {
    using Seconds = std::chrono::duration<double>;
    const double load_s = Seconds(t_start - t_load).count();
    const double prefill_s = Seconds(t_first - t_start).count();
    const double decode_s = Seconds(t_end - t_first).count();
    std::fprintf(stderr,
                 "[%s: load %.2f s | prompt %lld tokens, %.1f tok/s | generated %lld tokens, "
                 "%.1f tok/s | finish_reason %s]\n",
                 o.weights.c_str(), load_s, static_cast<long long>(result->prompt_tokens),
                 result->prompt_tokens / std::max(prefill_s, 1e-9),
                 static_cast<long long>(generated),
                 generated > 1 ? (generated - 1) / std::max(decode_s, 1e-9) : 0.0,
                 FinishReasonName(result->finish_reason));
  }
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
