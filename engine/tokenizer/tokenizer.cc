#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/tokenizer/json_fields.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using json_fields::FieldError;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return ss.str();
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const nlohmann::json& root) {
  std::vector<AddedToken> tokens;
  const nlohmann::json* list = json_fields::Find(root, "added_tokens");
  if (json_fields::IsNullOrAbsent(list)) return tokens;
  if (!list->is_array()) return FieldError("added_tokens", "must be an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const nlohmann::json& entry = (*list)[i];
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!entry.is_object()) return FieldError(path, "must be an object");
    AddedToken t;
    const nlohmann::json* id = json_fields::Find(entry, "id");
    if (id == nullptr) return FieldError(absl::StrCat(path, ".id"), "is missing");
    JAMBA_ASSIGN_OR_RETURN(t.id, json_fields::AsTokenId(*id, absl::StrCat(path, ".id")));
    JAMBA_ASSIGN_OR_RETURN(t.content, json_fields::GetString(entry, "content", path));
    JAMBA_ASSIGN_OR_RETURN(t.special, json_fields::GetBoolOr(entry, "special", path, false));
    JAMBA_ASSIGN_OR_RETURN(t.lstrip, json_fields::GetBoolOr(entry, "lstrip", path, false));
    JAMBA_ASSIGN_OR_RETURN(t.rstrip, json_fields::GetBoolOr(entry, "rstrip", path, false));
    JAMBA_ASSIGN_OR_RETURN(t.single_word,
                           json_fields::GetBoolOr(entry, "single_word", path, false));
    JAMBA_ASSIGN_OR_RETURN(t.normalized,
                           json_fields::GetBoolOr(entry, "normalized", path, !t.special));
    if (!IsValidUtf8(t.content)) return FieldError(absl::StrCat(path, ".content"), "is not UTF-8");
    tokens.push_back(std::move(t));
  }
  return tokens;
}

// A token named in tokenizer_config.json: a string or a serialized AddedToken object.
struct ConfigToken {
  AddedToken token;
  bool present = false;
};

absl::StatusOr<ConfigToken> ParseConfigToken(const nlohmann::json& config, const std::string& key) {
  ConfigToken out;
  const nlohmann::json* v = json_fields::Find(config, key);
  if (json_fields::IsNullOrAbsent(v)) return out;
  const auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer_config.json: field '", key, "' ", what));
  };
  out.token.special = true;
  out.token.normalized = false;
  if (v->is_string()) {
    out.token.content = v->get<std::string>();
  } else if (v->is_object()) {
    const nlohmann::json* content = json_fields::Find(*v, "content");
    if (content == nullptr || !content->is_string()) return error("needs a string 'content'");
    out.token.content = content->get<std::string>();
    for (auto [name, field] : {std::pair<const char*, bool*>{"lstrip", &out.token.lstrip},
                               {"rstrip", &out.token.rstrip},
                               {"single_word", &out.token.single_word},
                               {"normalized", &out.token.normalized}}) {
      const nlohmann::json* b = json_fields::Find(*v, name);
      if (json_fields::IsNullOrAbsent(b)) continue;
      if (!b->is_boolean()) return error(absl::StrCat("member '", name, "' must be a boolean"));
      *field = b->get<bool>();
    }
  } else {
    return error("must be a string or an object");
  }
  if (!IsValidUtf8(out.token.content)) return error("is not UTF-8");
  out.present = !out.token.content.empty();
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  const std::string json_path = dir + "/tokenizer.json";
  JAMBA_ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(json_path));
  std::string config_json;
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::ifstream(config_path).good()) {
    JAMBA_ASSIGN_OR_RETURN(config_json, ReadFile(config_path));
  }
  auto tokenizer = FromJson(tokenizer_json, config_json);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(dir, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(
    const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  const nlohmann::json root =
      nlohmann::json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json: not a valid JSON object");
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  static const nlohmann::json kNull;
  auto member = [&](const char* key) -> const nlohmann::json& {
    const nlohmann::json* v = json_fields::Find(root, key);
    return v == nullptr ? kNull : *v;
  };
  JAMBA_ASSIGN_OR_RETURN(t->normalizer_, NormalizerFromJson(member("normalizer"), "normalizer"));
  JAMBA_ASSIGN_OR_RETURN(t->pre_tokenizer_,
                         PreTokenizerFromJson(member("pre_tokenizer"), "pre_tokenizer"));
  if (!member("model").is_object()) return FieldError("model", "must be an object");
  JAMBA_ASSIGN_OR_RETURN(t->model_, BpeModel::FromJson(member("model"), "model"));
  JAMBA_ASSIGN_OR_RETURN(t->decoder_, DecoderFromJson(member("decoder"), "decoder"));
  JAMBA_ASSIGN_OR_RETURN(t->post_processor_,
                         SingleTemplateFromJson(member("post_processor"), "post_processor"));
  JAMBA_ASSIGN_OR_RETURN(std::vector<AddedToken> added, ParseAddedTokens(root));

  int32_t max_id = t->model_->max_id();
  for (const AddedToken& a : added) max_id = std::max(max_id, a.id);

  nlohmann::json config;
  if (!tokenizer_config_json.empty()) {
    config = nlohmann::json::parse(tokenizer_config_json, nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError("tokenizer_config.json: not a valid JSON object");
    }
  }
  ConfigToken named[4];
  const char* kNamedKeys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
  for (int i = 0; i < 4; ++i) {
    JAMBA_ASSIGN_OR_RETURN(named[i], ParseConfigToken(config, kNamedKeys[i]));
    if (!named[i].present) continue;
    const bool known = std::any_of(added.begin(), added.end(), [&](const AddedToken& a) {
      return a.content == named[i].token.content;
    });
    if (known) continue;
    // Like transformers, a named special token missing from added_tokens becomes one, with the
    // model's id for it or the next free id.
    AddedToken token = named[i].token;
    const auto model_id = t->model_->TokenToId(token.content);
    token.id = model_id ? *model_id : ++max_id;
    added.push_back(std::move(token));
  }
  t->added_ = AddedVocabulary(std::move(added), t->normalizer_.get());
  t->vocab_size_ = max_id + 1;

  if (named[0].present) {
    t->bos_id_ = t->TokenToId(named[0].token.content);
  } else if (t->post_processor_.prefix.size() == 1) {
    t->bos_id_ = t->post_processor_.prefix[0];
  }
  if (named[1].present) t->eos_id_ = t->TokenToId(named[1].token.content);
  for (int32_t id : t->post_processor_.prefix) {
    if (!t->IsValidId(id))
      return FieldError("post_processor", absl::StrCat("uses unknown id ", id));
  }
  for (int32_t id : t->post_processor_.suffix) {
    if (!t->IsValidId(id))
      return FieldError("post_processor", absl::StrCat("uses unknown id ", id));
  }
  return t;
}

void Tokenizer::EncodeText(std::vector<PreToken> pieces, std::vector<int32_t>* ids) const {
  if (pre_tokenizer_ != nullptr) pre_tokenizer_->PreTokenize(&pieces);
  for (const PreToken& p : pieces) {
    if (!p.text.empty()) model_->Tokenize(p.text, ids);
  }
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text,
                                                       bool add_special_tokens) const {
  const size_t valid = ValidUtf8PrefixLength(text);
  if (valid != text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input text is not valid UTF-8 (at byte ", valid, ")"));
  }
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = post_processor_.prefix;
  for (AddedSplit& raw : added_.SplitRaw(text)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    std::string normalized =
        normalizer_ != nullptr ? normalizer_->Normalize(std::move(raw.text)) : std::move(raw.text);
    for (AddedSplit& piece : added_.SplitNormalized(normalized)) {
      if (piece.id >= 0) {
        ids.push_back(piece.id);
      } else if (!piece.text.empty()) {
        std::vector<PreToken> pieces;
        pieces.push_back({std::move(piece.text), raw.offset == 0 && piece.offset == 0});
        EncodeText(std::move(pieces), &ids);
      }
    }
  }
  if (add_special_tokens) {
    ids.insert(ids.end(), post_processor_.suffix.begin(), post_processor_.suffix.end());
  }
  return ids;
}

const std::string* Tokenizer::TokenString(int32_t id) const {
  if (const AddedToken* a = added_.FindById(id)) return &a->content;
  return model_->IdToToken(id);
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* token = TokenString(id);
    if (token == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown token id ", id));
    }
    if (skip_special_tokens && added_.IsSpecialContent(*token)) continue;
    tokens.push_back(*token);
  }
  if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
  return absl::StrJoin(decoder_->DecodeChain(std::move(tokens)), "");
}

std::optional<int32_t> Tokenizer::TokenToId(absl::string_view token) const {
  if (const AddedToken* a = added_.FindByContent(token)) return a->id;
  return model_->TokenToId(token);
}

std::string Tokenizer::IdToToken(int32_t id) const {
  const std::string* token = TokenString(id);
  return token == nullptr ? std::string() : *token;
}

bool Tokenizer::IsValidId(int32_t id) const { return TokenString(id) != nullptr; }

bool Tokenizer::IsSpecial(int32_t id) const {
  const std::string* token = TokenString(id);
  return token != nullptr && added_.IsSpecialContent(*token);
}

bool Tokenizer::IsByteFallbackToken(int32_t id) const {
  if (decoder_ == nullptr || !decoder_->HasByteFallback()) return false;
  const std::string* token = TokenString(id);
  unsigned char byte;
  return token != nullptr && ParseByteFallbackToken(*token, &byte);
}

}  // namespace jamba
