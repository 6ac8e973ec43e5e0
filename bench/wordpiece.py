"""Benchmark wordpiece.py against Hugging Face on the same vocab and text, in one process.

    python bench/wordpiece.py --file some_text.txt [--vocab vocab.txt] [--cased]

Without --vocab it first trains an 8k vocab on the file (and reports how long that took). Then it
encodes the file with our WordPieceTokenizer, with tokenizers' Rust BertTokenizer (encode_batch over
the lines, which runs on all cores) and with transformers' pure-Python BertTokenizerLegacy (on a
slice: it is slow), asserts that all of them produce identical ids, and prints throughput and
ratios.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import wordpiece  # noqa: E402


def median_seconds(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", required=True,
                        help="UTF-8 text to encode (and to train on without --vocab)")
    parser.add_argument("--vocab",
                        help="a BERT vocab.txt; default: train one with --vocab_size on --file")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--cased", action="store_true")
    parser.add_argument("--legacy_bytes", type=int, default=200_000,
                        help="slice size for the slow Python peer")
    args = parser.parse_args()
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    mb = len(text.encode("utf-8")) / 1e6
    print(f"file {args.file}: {mb:.2f} MB, {len(text):,} characters")
    lowercase = not args.cased
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = args.vocab
        if vocab_path is None:
            for scoring in ("frequency", "likelihood"):
                t0, cpu0 = time.perf_counter(), time.process_time()
                vocab = wordpiece.train_wordpiece(text, args.vocab_size, lowercase=lowercase,
                                                  scoring=scoring)
                print(f"train {scoring:<10} {len(vocab)} tokens in "
                      f"{time.perf_counter() - t0:.2f} s "
                      f"({time.process_time() - cpu0:.2f} s of CPU time)")
                if scoring == "frequency":
                    vocab_path = os.path.join(tmp, "vocab.txt")
                    wordpiece.write_vocab(vocab, vocab_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # ._tokenizer: the tokenizers object itself
            rust = BertTokenizer(vocab=vocab_path, do_lower_case=lowercase)._tokenizer
            legacy = BertTokenizerLegacy(vocab_file=vocab_path, do_lower_case=lowercase)
        ours = wordpiece.WordPieceTokenizer.from_vocab_file(vocab_path, lowercase=lowercase)

    # ours: one call on the whole text; cold = fresh per-word cache, warm = filled by the cold call
    wordpiece.pre_tokenize("warm up the Unicode tables: é")
    t0 = time.perf_counter()
    ids = ours.encode(text)
    cold = time.perf_counter() - t0
    warm = median_seconds(lambda: ours.encode(text))

    lines = text.splitlines(keepends=True)  # Rust encode_batch: lines in parallel on every core
    rust_ids = [i for enc in rust.encode_batch(lines, add_special_tokens=False) for i in enc.ids]
    assert rust_ids == ids, "Rust BertTokenizer and wordpiece.py disagree"
    rust_batch = median_seconds(lambda: rust.encode_batch(lines, add_special_tokens=False))
    # fewer, longer inputs: kinder to Rust
    chunks = ["".join(lines[i:i + 100]) for i in range(0, len(lines), 100)]
    rust_chunks = median_seconds(lambda: rust.encode_batch(chunks, add_special_tokens=False))
    rust_one = median_seconds(lambda: rust.encode(text, add_special_tokens=False), repeats=1)

    # a prefix that ends at a line break
    cut = text.rfind("\n", 0, args.legacy_bytes) + 1 or len(text)
    piece = text[:cut]
    legacy_ids = legacy.convert_tokens_to_ids(legacy.tokenize(piece))
    assert legacy_ids == ours.encode(piece), "BertTokenizerLegacy and wordpiece.py disagree"
    legacy_time = median_seconds(lambda: legacy.tokenize(piece), repeats=1)
    legacy_mb = len(piece.encode("utf-8")) / 1e6

    print(f"identical ids from all three: {len(ids):,} tokens, {ids.count(ours.unk_id):,} [UNK]")
    print(f"wordpiece.py encode, cold cache                 {mb / cold:7.2f} MB/s")
    print(f"wordpiece.py encode, warm cache                 {mb / warm:7.2f} MB/s")
    print(f"tokenizers (Rust) encode_batch, lines           {mb / rust_batch:7.2f} MB/s  "
          f"({os.cpu_count()} cores)")
    print(f"tokenizers (Rust) encode_batch, 100-line chunks {mb / rust_chunks:7.2f} MB/s")
    print(f"tokenizers (Rust) encode, the whole text        {mb / rust_one:7.2f} MB/s")
    print(f"BertTokenizerLegacy (Python)                    {legacy_mb / legacy_time:7.2f} MB/s  "
          f"(on the first {legacy_mb:.2f} MB)")
    best_rust = min(rust_batch, rust_chunks)
    print(f"ratio ours/Rust encode_batch (its faster layout): cold {best_rust / cold:.2f}x, "
          f"warm {best_rust / warm:.2f}x; "
          f"ours/legacy: warm {legacy_time / legacy_mb * mb / warm:.1f}x")


if __name__ == "__main__":
    main()
