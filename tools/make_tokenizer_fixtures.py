#!/usr/bin/env python3
"""Builds the tokenizer parity fixtures under tests/fixtures/tokenizers/.

What it writes:
  corpus.json                 >= 500 test strings (written once; kept if it already exists so the
                              committed corpus stays stable).
  <name>/tokenizer.json       a tokenizer (trained here, or converted from a real one).
  <name>/tokenizer_config.json
  <name>/expected.json        reference results of the Python libraries for every corpus string:
                              ids with and without special tokens, decode of those ids with
                              skip_special_tokens false/true, and decode of random id sequences.
  real_mistral/SOURCE.md      provenance and licence of the real vocabulary.

Reference: ids come from transformers' PreTrainedTokenizerFast (the `tokenizers` backend; it
decides BOS/EOS from the file like AutoTokenizer does) loaded from the fixture folder, with
clean_up_tokenization_spaces off; the script asserts they agree with the raw `tokenizers` library.
It also reports how often AutoTokenizer with the model family's own class (which transformers 5
rebuilds from the vocabulary) agrees, and for the real Mistral vocabulary how often SentencePiece
itself agrees.

Tokenizers (trained with `tokenizers` on the Python standard library's sources plus a few
multilingual sentences, so results depend a little on the Python version; the outputs are
committed):
  gpt_neox_bpe     byte-level BPE in GPT-NeoX / Mamba configuration: NFC, ByteLevel(add_prefix_space
                   false), <|endoftext|>=0, <|padding|>=1, NeoX-style non-special multi-space added
                   tokens and an lstrip/rstrip special token.
  llama3_regex_bpe the same vocabulary with Llama-3's Split regex + ByteLevel(use_regex false).
  falcon_style_bpe the same vocabulary with Falcon's Punctuation/ByteLevel/Digits/Split sequence.
  jamba_spm_bpe    SentencePiece-style BPE with byte fallback, Jamba layout: <|pad|>=0,
                   <|startoftext|>=1 (BOS), <|endoftext|>=2, <|unk|>=3, bytes, no dummy prefix
                   (Metaspace prepend_scheme "never").
  metaspace_first_bpe  the Jamba vocabulary with Metaspace(prepend_scheme "first", split true) and a
                   Metaspace decoder.
  llama_spm_bpe    SentencePiece-style BPE in Llama/Mixtral layout: Prepend("▁") + Replace normalizer,
                   <unk>=0, <s>=1 (BOS via TemplateProcessing), </s>=2, merges in "a b" form.
  real_mistral     the real Mistral-7B/Mixtral-8x7B vocabulary: tokenizer.model.v1 from the PyPI
                   package mistral-common (Apache-2.0), converted to the layout of the Hub's
                   Mixtral tokenizer.json. Skipped unless mistral-common, sentencepiece and protobuf
                   are installed.

Usage:
  pip install tokenizers transformers sentencepiece protobuf
  pip install --no-deps mistral-common
  python3 tools/make_tokenizer_fixtures.py
"""
import glob
import json
import os
import random
import sys
import unicodedata
import zlib

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
VOCAB_SIZE = 4000
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από το τεμπέλικο σκυλί.",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧。",
    "私はガラスを食べられます。それは私を傷つけません。",
    "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요.",
    "أستطيع أكل الزجاج و هذا لا يؤلمني.",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती.",
    "אני יכול לאכול זכוכית וזה לא מזיק לי.",
    "Ich kann Glas essen, ohne mir zu schaden. Größe, Straße, Äpfel.",
    "Je peux manger du verre, ça ne me fait pas mal. Où est l'hôtel ?",
    "Puedo comer vidrio, no me hace daño. ¿Dónde está la estación?",
    "Tôi có thể ăn thủy tinh mà không hại gì.",
    "ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ",
    "Mogę jeść szkło i mi nie szkodzi. Zażółć gęślą jaźń.",
    "Cam yiyebilirim, bana zararı dokunmaz. Çok güzel, değil mi?",
    "நான் கண்ணாடி சாப்பிடுவேன், அதனால் எனக்கு ஒரு கேடும் வராது.",
    "Я можу їсти скло, і воно мені не зашкодить.",
]


def hand_written():
    s = [
        "", " ", "  ", "\n", "\t", " \n ", "a", "Hello", "Hello world", " Hello world",
        "Hello world ", "  leading two spaces", "trailing two spaces  ", "Hello\nworld",
        "Hello\n\nworld\n", "tabs\tand\ttabs", "mixed \t\n \r\n whitespace", "\r\n\r\n",
        "many          spaces          here", "a\u00a0non-breaking space", "ideographic\u3000space",
        "thin\u2009space and em\u2003space", "line\u2028separator", "I'm you're we've they'll he'd it's",
        "I'M YOU'RE WE'VE THEY'LL HE'D IT'S", "don't can't won't", "'s 't 're", "O'Neil's",
        "hello, world! How are you? (fine) [ok] {yes}", "...!!!???", "--- *** ___ ===",
        "email@example.com https://example.org/path?q=1&r=2#frag", "C:\\Users\\name\\file.txt",
        "0", "7", "42", "123", "1234", "12345", "3.14159", "1,000,000", "-273.15", "2024-01-31",
        "12345678901234567890123456789012345678901234567890", "phone: +1 (555) 123-4567",
        "v1.2.3-rc.4", "0x7FFF_FFFF", "1e-10", "٣٤٥ ١٢", "१२३४", "５０円", "Ⅻ ⅷ ½ ¾ ²³",
        "<|endoftext|>", "text<|endoftext|>more", "<|endoftext|><|endoftext|>",
        " <|endoftext|> ", "<|padding|>", "</s>", "<s>", "<s>Hello</s>", "Hello</s>world",
        " </s> ", "<unk>", "<|startoftext|>hello", "<|pad|><|unk|>", "<|mask|>", "a <|mask|> b",
        "a<|mask|>b", "x   <|mask|>   y", "<0x41>", "<0xE2><0x82><0xAC>", "▁hello", "▁▁▁",
        "hello▁world", "_underscore_ __dunder__", "<|endoftext", "|endoftext|>", "<|<|endoftext|>|>",
        "😀", "😀😃😄😁", "I ❤️ you", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇫🇷🇯🇵", "🇩🇪 flag",
        "emoji in text 🎉 party 🎈!", "★☆✓✗→←↑↓∞≈≠≤≥", "∀x∈ℝ: x²≥0", "© ® ™ € £ ¥ ₹ ₿",
        "e\u0301", "cafe\u0301", "café", "n\u0303", "A\u030a", "Å", "\u212b", "\u1e9b\u0323",
        "q\u0307\u0323", "o\u0308\u0304", "\u0041\u0308\u0301", "한국어 조합 ᄒ\u1161\u11ab",
        "각\u1100\u1161\u11a8", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319"
        "\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c"
        "\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334"
        "\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d"
        "\u0333", "ﬁ ﬂ ﬀ", "Ǆ ǅ ǆ", "ß ẞ", "İstanbul ı", "ſ long s 'ſ", "K Kelvin 'K",
        "\u200b zero width \u200c\u200d", "\ufeffBOM", "soft\u00adhyphen", "\u0000nul",
        "\u0007bell\u001b[0m", "\u007f", "\U0010ffff", "\ue000 private use", "\ufffd replacement",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙", "𠀀𠀁𠀂 rare CJK", "𓀀𓀁 hieroglyphs", "ᚠᛇᚻ᛫ᛒᛦᚦ runes",
        "日本語のテキストと English mixed 混合", "中文，标点。“引号”（括号）", "ｆｕｌｌｗｉｄｔｈ",
        "ﾊﾝｶｸ ｶﾀｶﾅ", "Ελληνικά: αβγδε ΑΒΓΔΕ ά έ ή", "Кириллица: ёЁ йЙ щЩ",
        "עברית עם ניקוד: שָׁלוֹם", "العربية مع التشكيل: مَرْحَبًا", "اردو: میں شیشہ کھا سکتا ہوں",
        "हिन्दी: नमस्ते दुनिया", "বাংলা: আমি কাঁচ খেতে পারি", "ગુજરાતી ਪੰਜਾਬੀ ಕನ್ನಡ മലയാളം తెలుగు",
        "ქართული Հայերեն አማርኛ ᏣᎳᎩ", "ລາວ ខ្មែរ မြန်မာ བོད་ཡིག", "Tiếng Việt có dấu: ă â đ ê ô ơ ư",
        "def foo(x):\n    return x * 2\n", "    indented = True\n\tif x:\n\t\tpass",
        "for (int i = 0; i < n; ++i) {\n  sum += a[i];\n}",
        "#include <vector>\nstd::vector<int> v{1, 2, 3};",
        "template <typename T> T max(T a, T b) { return a > b ? a : b; }",
        '{"key": "value", "list": [1, 2, 3], "nested": {"a": null, "b": true}}',
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
        "<html><body class=\"main\">Hi &amp; bye</body></html>",
        "$ ls -la | grep '.py' > out.txt 2>&1", "x = [i**2 for i in range(10) if i % 2 == 0]",
        "λx.λy.x y", "if (a && b || !c) { return -1; }", "a+b-c*d/e%f^g", "a==b!=c<=d>=e",
        "/* comment */ // another", "'''docstring'''", '"""triple"""', "`backticks`",
        "a" * 300, "ab" * 200, "supercalifragilisticexpialidocious" * 5,
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
        "x" * 1000 + " " + "y" * 1000, "1" * 500, " " * 100, "\n" * 50, "!" * 64,
        "😀" * 40, "中" * 200, "a b " * 150,
    ]
    return s + MULTILINGUAL


def stdlib_lines(rng, count):
    lines = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if 10 <= len(line) <= 200:
                    lines.append(line)
    return rng.sample(lines, count)


def random_mixtures(rng, count):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", " \t\n\r  ", ".,;:!?'\"()[]{}<>-_+=*/\\|@#$%^&~`",
        "абвгдежзийклмнопрстуфхцчшщъыьэюя", "αβγδεζηθικλμνξοπρστυφχψω", "日本語中文字漢字",
        "ひらがなカタカナ", "한국어글자", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "अआइईउऊकखगघ",
        "éèêëàâäôöûüçñß", "\u0300\u0301\u0302\u0308\u0327", "😀🎉👍❤🔥🚀", "\u200d\ufe0f",
        "▁", "½²³€£¥©®™", "𝔘𝕄🀄𠀀",
    ]
    out = []
    for _ in range(count):
        n = rng.randint(1, 60)
        chosen = rng.sample(pools, rng.randint(1, 4))
        out.append("".join(rng.choice(rng.choice(chosen)) for _ in range(n)))
    return out


def build_corpus():
    rng = random.Random(20240531)
    corpus = hand_written()
    corpus += stdlib_lines(rng, 180)
    corpus += random_mixtures(rng, 150)
    for i, text in enumerate(list(corpus[:60])):
        corpus.append(unicodedata.normalize("NFD", text))
        if i % 3 == 0:
            corpus.append("  " + text + "  ")
    return corpus


def load_corpus():
    path = os.path.join(OUT, "corpus.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    corpus = build_corpus()
    os.makedirs(OUT, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=0)
        f.write("\n")
    return corpus


def training_files(tmp):
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    extra = os.path.join(tmp, "multilingual.txt")
    with open(extra, "w", encoding="utf-8") as f:
        for _ in range(40):
            f.write("\n".join(MULTILINGUAL) + "\n")
    return files + [extra]


def trained_model_json(pre, norm, specials, tmp, **bpe_args):
    tok = Tokenizer(models.BPE(**bpe_args))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    alphabet = pre_tokenizers.ByteLevel.alphabet() if isinstance(
        pre, pre_tokenizers.ByteLevel) else []
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials,
                                  initial_alphabet=alphabet, limit_alphabet=400,
                                  show_progress=False)
    tok.train(training_files(tmp), trainer)
    return json.loads(tok.to_str())["model"]


def with_byte_tokens(model, specials):
    """Renumbers a trained vocabulary Llama-style: specials, then <0x00>..<0xFF>, then the rest."""
    order = list(specials) + [f"<0x{b:02X}>" for b in range(256)]
    rest = sorted((i, t) for t, i in model["vocab"].items() if t not in set(order))
    vocab = {t: i for i, t in enumerate(order + [t for _, t in rest])}
    model = dict(model)
    model["vocab"] = vocab
    return model


def assemble(model, normalizer, pre_tokenizer, decoder, post_processor, added):
    """Builds a tokenizer.json dict with the given parts; `added` is a list of AddedToken."""
    tok = Tokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": model}))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    tok.post_processor = post_processor
    tok.add_tokens(added)
    return json.loads(tok.to_str())


def write_fixture(name, tokenizer_json, config, corpus, auto_config=None, check=None):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False, indent=1)
        f.write("\n")
    config = dict(config, clean_up_tokenization_spaces=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
        f.write("\n")

    hf = PreTrainedTokenizerFast.from_pretrained(d)
    raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    exp = {"encode": [], "encode_no_special": [], "decode": [], "decode_skip_special": []}
    for text in corpus:
        ids = hf.encode(text, add_special_tokens=True)
        ids_plain = hf.encode(text, add_special_tokens=False)
        assert ids == raw.encode(text, add_special_tokens=True).ids, (name, text)
        assert ids_plain == raw.encode(text, add_special_tokens=False).ids, (name, text)
        dec = hf.decode(ids, skip_special_tokens=False)
        dec_skip = hf.decode(ids, skip_special_tokens=True)
        assert dec == raw.decode(ids, skip_special_tokens=False), (name, text)
        assert dec_skip == raw.decode(ids, skip_special_tokens=True), (name, text)
        exp["encode"].append(ids)
        exp["encode_no_special"].append(ids_plain)
        exp["decode"].append(dec)
        exp["decode_skip_special"].append(dec_skip)

    rng = random.Random(zlib.crc32(name.encode()))
    vocab_size = max(raw.get_vocab(with_added_tokens=True).values()) + 1
    byte_ids = [i for t, i in raw.get_vocab().items() if t.startswith("<0x") and len(t) == 6]
    specials = [t.content for t in raw.get_added_tokens_decoder().values()]
    special_ids = [raw.token_to_id(t) for t in specials]
    exp["random_ids"], exp["random_decode"], exp["random_decode_skip_special"] = [], [], []
    for k in range(120):
        n = rng.randint(1, 40)
        pool = list(range(vocab_size))
        ids = []
        for _ in range(n):
            r = rng.random()
            if byte_ids and r < 0.35:
                ids.append(rng.choice(byte_ids))
            elif special_ids and r < 0.45:
                ids.append(rng.choice(special_ids))
            else:
                ids.append(rng.choice(pool))
        exp["random_ids"].append(ids)
        exp["random_decode"].append(hf.decode(ids, skip_special_tokens=False))
        exp["random_decode_skip_special"].append(hf.decode(ids, skip_special_tokens=True))
        assert exp["random_decode"][-1] == raw.decode(ids, skip_special_tokens=False)
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")

    report = f"{name}: vocab {vocab_size}, {len(corpus)} strings"
    if auto_config is not None:
        # How the family's own transformers class (which rebuilds the pipeline) compares.
        adir = os.path.join(os.environ.get("TMPDIR", "/tmp"), "tokfix_auto_" + name)
        os.makedirs(adir, exist_ok=True)
        for fname in ("tokenizer.json",):
            with open(os.path.join(d, fname), encoding="utf-8") as src, open(
                    os.path.join(adir, fname), "w", encoding="utf-8") as dst:
                dst.write(src.read())
        with open(os.path.join(adir, "tokenizer_config.json"), "w") as f:
            json.dump(dict(config, **auto_config), f)
        auto = AutoTokenizer.from_pretrained(adir)
        same = sum(auto.encode(t) == e for t, e in zip(corpus, exp["encode"]))
        report += f"; AutoTokenizer as {type(auto).__name__} agrees on {same}/{len(corpus)}"
    if check is not None:
        report += "; " + check(exp)
    print(report)


def byte_level_fixtures(corpus, tmp):
    model = trained_model_json(pre_tokenizers.ByteLevel(add_prefix_space=False), normalizers.NFC(),
                               ["<|endoftext|>", "<|padding|>"], tmp)
    added = [AddedToken("<|endoftext|>", special=True, normalized=False),
             AddedToken("<|padding|>", special=True, normalized=False),
             AddedToken("  ", special=False, normalized=True),
             AddedToken("    ", special=False, normalized=True),
             AddedToken("\t\t", special=False, normalized=True),
             AddedToken("<|mask|>", special=True, normalized=False, lstrip=True, rstrip=True)]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
              "pad_token": "<|padding|>", "add_bos_token": False, "add_eos_token": False}
    neox = assemble(model, normalizers.NFC(), pre_tokenizers.ByteLevel(add_prefix_space=False),
                    decoders.ByteLevel(), processors.ByteLevel(trim_offsets=True), added)
    write_fixture("gpt_neox_bpe", neox, config, corpus,
                  auto_config={"tokenizer_class": "GPTNeoXTokenizer"})

    llama3_pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    model3 = dict(model, ignore_merges=True)
    llama3 = assemble(model3, None, llama3_pre, decoders.ByteLevel(),
                      processors.TemplateProcessing(single="<|endoftext|> $A",
                                                    special_tokens=[("<|endoftext|>", 0)]),
                      added[:2])
    write_fixture("llama3_regex_bpe", llama3, config, corpus)

    falcon_pre = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated", invert=False)])
    falcon = assemble(model, None, falcon_pre, decoders.ByteLevel(), None, added[:2])
    write_fixture("falcon_style_bpe", falcon, config, corpus)


def spm_fixtures(corpus, tmp):
    jamba_specials = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>"]
    metaspace_never = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never",
                                               split=False)
    model = trained_model_json(metaspace_never, None, jamba_specials, tmp, unk_token="<|unk|>",
                               byte_fallback=True, fuse_unk=True)
    model = with_byte_tokens(model, jamba_specials)
    added = [AddedToken(t, special=True, normalized=False) for t in jamba_specials]
    spm_decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    bos = processors.TemplateProcessing(single="<|startoftext|> $A",
                                        special_tokens=[("<|startoftext|>", 1)])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|unk|>", "pad_token": "<|pad|>",
              "add_bos_token": True, "add_eos_token": False}
    jamba = assemble(model, None, metaspace_never, spm_decoder, bos, added)
    write_fixture("jamba_spm_bpe", jamba, config, corpus,
                  auto_config={"tokenizer_class": "LlamaTokenizer", "legacy": False,
                               "add_prefix_space": False})

    first = assemble(model, None,
                     pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
                     decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first",
                                                           split=True),
                                        decoders.ByteFallback(), decoders.Fuse()]),
                     bos, added)
    write_fixture("metaspace_first_bpe", first, config, corpus)

    llama_specials = ["<unk>", "<s>", "</s>"]
    prepend = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    lmodel = trained_model_json(None, prepend, llama_specials, tmp, unk_token="<unk>",
                                byte_fallback=True, fuse_unk=True)
    lmodel = with_byte_tokens(lmodel, llama_specials)
    lmodel["merges"] = [" ".join(m) if isinstance(m, list) else m for m in lmodel["merges"]]
    llama = llama_layout(lmodel)
    write_fixture("llama_spm_bpe", llama, llama_config(), corpus,
                  auto_config={"tokenizer_class": "LlamaTokenizer", "legacy": True})


def llama_config():
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}


def llama_layout(model):
    """The layout of the Hub's Llama-2 / Mistral / Mixtral tokenizer.json files."""
    added = [AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]]
    tj = assemble(
        model, normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
        None,
        decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                           decoders.Strip(" ", 1, 0)]),
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                      special_tokens=[("<s>", 1)]),
        added)
    if isinstance(model["merges"][0], str):  # keep the legacy "a b" form
        tj["model"]["merges"] = model["merges"]
    return tj


def real_mistral(corpus):
    import importlib.metadata
    import importlib.util
    spec = importlib.util.find_spec("mistral_common")  # only its data file is needed
    if spec is None:
        print("real_mistral: skipped (mistral-common is not installed)")
        return
    try:
        import sentencepiece
        from transformers.convert_slow_tokenizer import SentencePieceExtractor
        from tokenizers.models import BPE
    except ImportError as e:
        print(f"real_mistral: skipped ({e})")
        return
    spm = os.path.join(os.path.dirname(spec.origin), "data", "tokenizer.model.v1")
    mc_version = importlib.metadata.version("mistral-common")
    kwargs = SentencePieceExtractor(spm).extract(BPE)
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>",
             "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
             "byte_fallback": True, "ignore_merges": False, "vocab": kwargs["vocab"],
             "merges": [" ".join(m) for m in kwargs["merges"]]}
    tj = llama_layout(model)
    sp = sentencepiece.SentencePieceProcessor(model_file=spm)

    def check(exp):
        same = sum(sp.encode(t) == e for t, e in zip(corpus, exp["encode_no_special"]))
        return f"SentencePiece agrees on {same}/{len(corpus)}"

    write_fixture("real_mistral", tj, llama_config(), corpus,
                  auto_config={"tokenizer_class": "LlamaTokenizer", "legacy": True}, check=check)
    with open(os.path.join(OUT, "real_mistral", "SOURCE.md"), "w") as f:
        f.write(f"""# real_mistral

Vocabulary and merges of the real Mistral-7B-v0.1 / Mixtral-8x7B tokenizer (32000 tokens,
SentencePiece BPE with byte fallback). Source: `mistral_common/data/tokenizer.model.v1` in the
PyPI wheel mistral-common {mc_version} (Apache License 2.0, (c) Mistral AI; the
same file Mistral AI published with Mistral-7B-v0.1 under Apache-2.0).

tokenizer.json was produced by tools/make_tokenizer_fixtures.py: vocabulary and merges extracted
with transformers' SentencePieceExtractor, assembled in the layout of the Hugging Face Hub's
mistralai/Mixtral-8x7B-v0.1 tokenizer.json (normalizer Prepend("▁") + Replace(" ", "▁"), no
pre-tokenizer, BPE byte_fallback + fuse_unk, decoder Replace/ByteFallback/Fuse/Strip, BOS <s>
via TemplateProcessing). No tokenizer.json of Jamba, Mixtral, GPT-NeoX or Falcon ships in a PyPI
package that we found (ai21-tokenizer 0.8-1.1 ships only the J2 SentencePiece model and
downloads Jamba's tokenizer from the Hub at run time).
""")


def main():
    import tempfile
    corpus = load_corpus()
    assert len(corpus) >= 500, len(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        byte_level_fixtures(corpus, tmp)
        spm_fixtures(corpus, tmp)
    real_mistral(corpus)


if __name__ == "__main__":
    main()
