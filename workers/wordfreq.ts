/**
 * Counts word frequencies, either in a text given as input or in a corpus it
 * generates itself from a seed (Zipf-distributed synthetic words, so a demo
 * needs no large input), and returns the most frequent words.
 */
import type { JobContext } from '../src/context.ts';
import { PermanentError } from '../src/errors.ts';

/** The longest text accepted, in UTF-16 code units. */
export const MAX_TEXT_LENGTH = 16 * 1024 * 1024;

/** The most words a generated corpus may have. */
export const MAX_WORDS = 50_000_000;

/** The most entries `top` may ask for. */
export const MAX_TOP = 1000;

/** How many distinct words the generated corpus draws from. */
const VOCABULARY_SIZE = 5000;

/** Syllables the synthetic words are spelled with. */
const SYLLABLES = ['ka', 'lo', 'mi', 'nu', 're', 'sa', 'ti', 'vo', 'be', 'da', 'fi', 'gu', 'ha', 'jo', 'pe', 'zu'];

/** Words counted (or generated) between two looks at the signal: a few milliseconds of work. */
const CHUNK_WORDS = 20_000;

/** Progress is reported whenever it has moved on by at least this many percent. */
const PROGRESS_STEP = 2;

/** A word: letters and digits, with inner apostrophes ("don't"). */
const WORD = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu;

/** Input of `wordfreq`: exactly one of `text` and `words`. */
export interface WordfreqInput {
  /** The text to count, case-insensitively. */
  text?: string;
  /** Instead of `text`: generate a corpus of this many words (1 to MAX_WORDS). */
  words?: number;
  /** Seed of the generated corpus (an integer; default 1). Same seed, same corpus. */
  seed?: number;
  /** How many of the most frequent words to return (1 to MAX_TOP; default 10). */
  top?: number;
}

/** One entry of the frequency table. */
export interface WordCount {
  word: string;
  count: number;
}

/** Output of `wordfreq`. */
export interface WordfreqOutput {
  /** Words counted, repeats included. */
  totalWords: number;
  /** Different words seen. */
  distinctWords: number;
  /** The most frequent words, by count descending, then alphabetically. */
  top: WordCount[];
}

/** A demo input: about 250 ms on one core. */
export const demoInput: WordfreqInput = { words: 1_000_000, seed: 42, top: 10 };

/** Runtime options for the `wordfreq` job type. */
export const options = { timeoutMs: 60_000, maxAttempts: 3 };

/** Counts the words of `input.text`, or of a generated corpus of `input.words` words. */
export default async function wordfreq(input: WordfreqInput, ctx: JobContext): Promise<WordfreqOutput> {
  const request = readInput(input);
  ctx.signal.throwIfAborted();

  const counts = new Map<string, number>();
  let reported = 0;
  const report = (percent: number, message: string): void => {
    if (percent >= reported + PROGRESS_STEP && percent < 100) {
      reported = percent;
      ctx.progress(percent, message, { distinctWords: counts.size });
    }
  };

  if (request.kind === 'text') {
    const text = request.text.toLowerCase();
    const re = new RegExp(WORD.source, WORD.flags);
    while (!countMatches(text, re, counts, CHUNK_WORDS)) {
      report(Math.floor((re.lastIndex / text.length) * 100), 'counting');
      // The abort arrives as a message: without this turn of the event loop it could never fire.
      await yieldToEventLoop();
      ctx.signal.throwIfAborted();
    }
  } else {
    const corpus = new Corpus(request.seed);
    for (let done = 0; done < request.words; ) {
      const n = Math.min(CHUNK_WORDS, request.words - done);
      const chunk = corpus.next(n).toLowerCase();
      countMatches(chunk, new RegExp(WORD.source, WORD.flags), counts, Infinity);
      done += n;
      report(Math.floor((done / request.words) * 100), 'generating and counting');
      await yieldToEventLoop();
      ctx.signal.throwIfAborted();
    }
  }

  let totalWords = 0;
  for (const count of counts.values()) totalWords += count;
  const top = [...counts]
    .sort(([wordA, countA], [wordB, countB]) => countB - countA || (wordA < wordB ? -1 : wordA > wordB ? 1 : 0))
    .slice(0, request.top)
    .map(([word, count]) => ({ word, count }));
  ctx.progress(100, 'done', { distinctWords: counts.size });
  return { totalWords, distinctWords: counts.size, top };
}

/**
 * Counts up to `max` matches of the global regex `re` in `text`, from `re.lastIndex` on.
 * Returns true once the text is exhausted; otherwise `re.lastIndex` is where to resume.
 */
function countMatches(text: string, re: RegExp, counts: Map<string, number>, max: number): boolean {
  for (let seen = 0; seen < max; seen++) {
    const match = re.exec(text);
    if (match === null) return true;
    const word = match[0];
    counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return false;
}

/** A deterministic stream of sentences over a Zipf-distributed synthetic vocabulary. */
class Corpus {
  private readonly vocabulary: string[] = [];
  /** cumulative[i]: the probability of drawing one of the i + 1 most frequent words. */
  private readonly cumulative = new Float64Array(VOCABULARY_SIZE);
  private state: number;
  private sentenceLeft = 0;

  constructor(seed: number) {
    this.state = seed >>> 0;
    let total = 0;
    for (let rank = 0; rank < VOCABULARY_SIZE; rank++) {
      this.vocabulary.push(spell(rank));
      total += 1 / (rank + 1);
      this.cumulative[rank] = total;
    }
    for (let rank = 0; rank < VOCABULARY_SIZE; rank++) this.cumulative[rank] /= total;
  }

  /** The next `count` words as text: capitalised sentences of 5 to 20 words, commas here and there. */
  next(count: number): string {
    const parts: string[] = [];
    for (let i = 0; i < count; i++) {
      let word = this.vocabulary[this.draw()];
      if (this.sentenceLeft === 0) {
        this.sentenceLeft = 5 + Math.floor(this.random() * 16);
        word = word[0].toUpperCase() + word.slice(1);
      }
      this.sentenceLeft--;
      const separator = this.sentenceLeft === 0 ? '. ' : this.random() < 0.08 ? ', ' : ' ';
      parts.push(word + separator);
    }
    return parts.join('');
  }

  /** The rank of a word drawn from the Zipf distribution, by binary search. */
  private draw(): number {
    const u = this.random();
    let low = 0;
    let high = VOCABULARY_SIZE - 1;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.cumulative[mid] < u) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** mulberry32: a small, fast, seedable generator; uniform in [0, 1). */
  private random(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** The synthetic word of a rank: its digits in base 16, one syllable each ("ka", "lo", ..., "kalo", ...). */
function spell(rank: number): string {
  let word = '';
  let n = rank;
  do {
    word = SYLLABLES[n % SYLLABLES.length] + word;
    n = Math.floor(n / SYLLABLES.length);
  } while (n > 0);
  return word;
}

/** The checked input, one of two kinds. */
type Request = { kind: 'text'; text: string; top: number } | { kind: 'generate'; words: number; seed: number; top: number };

/** Checks the input, throwing PermanentError (no retry) with the field's name. */
function readInput(input: WordfreqInput): Request {
  if (typeof input !== 'object' || input === null) {
    throw new PermanentError('input must be an object like { "text": "..." } or { "words": 1000000 }');
  }
  const top = input.top ?? 10;
  if (typeof top !== 'number' || !Number.isInteger(top) || top < 1 || top > MAX_TOP) {
    throw new PermanentError(`input.top must be an integer from 1 to ${MAX_TOP} (got ${JSON.stringify(top)})`);
  }
  if (input.text !== undefined && input.words !== undefined) {
    throw new PermanentError('input.text and input.words cannot both be given: count a text or generate one');
  }
  if (input.text !== undefined) {
    const { text } = input;
    if (typeof text !== 'string' || text.length > MAX_TEXT_LENGTH) {
      throw new PermanentError(`input.text must be a string of at most ${MAX_TEXT_LENGTH} characters`);
    }
    return { kind: 'text', text, top };
  }
  const { words, seed = 1 } = input;
  if (typeof words !== 'number' || !Number.isInteger(words) || words < 1 || words > MAX_WORDS) {
    throw new PermanentError(
      `input.words must be an integer from 1 to ${MAX_WORDS} when input.text is not given (got ${JSON.stringify(words)})`,
    );
  }
  if (typeof seed !== 'number' || !Number.isInteger(seed)) {
    throw new PermanentError(`input.seed must be an integer (got ${JSON.stringify(seed)})`);
  }
  return { kind: 'generate', words, seed, top };
}

/** Lets pending messages (an abort among them) be delivered before the next chunk of work. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
