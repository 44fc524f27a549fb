"""A deterministic synthetic corpus for timing: documents of ~90-word paragraphs, one paragraph per chunk.

Words follow a Zipf-Mandelbrot distribution over a vocabulary of a few thousand real English words and
technical terms (function words take the top ranks, as in real text), so posting-list lengths, document
frequencies and query terms behave like those of real prose rather than of random strings. Everything is
drawn from numpy's PCG64 generator seeded by the caller: the same seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Ranked first, most frequent first: the words that make prose look like prose (most are stop words).
_FUNCTION = """
the of and to a in is that for it as was with be by on not he this are or his from at which but have an they
you were their one all we can her has there been if more when will would who so no she other its may these
also into than any only new some could time them about then two do first after most over such between each
through where those how many should well while both under same because before during without within must
very being against however since among still often upon until here whether although
""".split()  # noqa: SIM905

_GENERAL = """
people year way day man thing woman life child world school state family student group country problem hand
part place case week company system program question work government number night point home water room
mother area money story fact month lot right study book eye job word business issue side kind head house
service friend father power hour game line end member law car city community name president team minute idea
kid body information back parent face others level office door health person art war history party result
change morning reason research girl guy moment air teacher force education foot boy age policy music market
sense nation plan college interest death experience effect class control care field development role effort
rate heart drug show leader light voice wife police mind price report decision son view relationship town
road arm difference value building action model season society tax director position player record paper
space ground form event official matter center couple site project activity star table need court oil
situation cost industry figure street image phone data picture practice piece land product doctor wall
patient worker news test movie north love support technology step baby computer type attention film tree
source organization hair window evidence population site rule truth fire network discussion network paper
chance theory page memory animal garden island bridge river mountain valley forest desert ocean coast harbor
village castle tower church temple palace garden bottle basket engine wheel bicycle train station airport
ticket journey passenger driver letter message signal channel pattern method approach process structure
function element factor feature measure sample variable quality quantity standard pressure surface volume
weight length distance speed direction motion energy heat temperature weather climate season summer winter
spring autumn rain snow wind storm cloud sky sun moon planet earth metal stone glass wood paper cloth cotton
wool leather plastic rubber iron steel copper silver gold bread butter cheese coffee sugar salt pepper fruit
apple orange lemon grape potato tomato onion garlic rice wheat corn bean nut seed flower leaf root branch
grass plant farm farmer field harvest kitchen bedroom window floor ceiling roof garage yard fence gate path
corner edge border boundary region province county district neighborhood village capital empire kingdom
colony republic democracy election vote campaign candidate senate congress parliament minister council
committee agency department bureau institution university library museum gallery theater concert festival
ceremony wedding funeral holiday vacation weekend evening afternoon midnight century decade generation
tradition culture language literature poetry novel chapter sentence phrase grammar vocabulary dictionary
letter alphabet number figure chart diagram graph map atlas globe compass clock calendar schedule deadline
budget profit loss income salary wage payment invoice receipt contract agreement treaty alliance partnership
competition contest tournament championship victory defeat battle soldier army navy officer captain sergeant
general weapon shield armor horse saddle carriage wagon cart boat ship sail anchor island shore beach wave
tide current flood drought famine disease virus infection symptom treatment therapy medicine surgery
hospital clinic nurse physician dentist pharmacy vitamin protein muscle bone blood brain nerve skin lung
liver kidney stomach heart throat finger thumb shoulder elbow knee ankle toe forehead cheek chin lip tongue
tooth smile laugh tear dream sleep hunger thirst pain pleasure fear anger joy sorrow hope trust doubt belief
faith wisdom knowledge skill talent habit custom manner behavior attitude opinion argument debate
conversation interview lecture lesson course exam grade degree diploma certificate license permit visa
passport border customs trade export import supply demand shortage surplus inflation recession growth
investment investor shareholder stock bond loan credit debt interest bank account balance deposit withdrawal
transfer currency coin dollar euro pound market shop store mall counter shelf package parcel delivery
shipment warehouse factory machine tool hammer nail screw drill saw knife fork spoon plate cup bowl pot pan
oven stove fridge sink tap pipe valve pump tank barrel bucket rope chain wire cable switch button lever
handle knob lock key hinge frame panel board beam column pillar arch dome vault stair ladder bright dark
heavy light quick slow strong weak simple complex modern ancient early late large small little big long
short high low deep shallow wide narrow thick thin hot cold warm cool wet dry clean dirty fresh stale rich
poor cheap expensive easy difficult hard soft smooth rough sharp dull loud quiet calm busy empty full open
closed public private local global national foreign domestic rural urban central general special common rare
usual strange familiar obvious clear vague accurate precise exact rough correct wrong true false real fake
natural artificial normal regular random careful careless patient honest gentle brave proud humble polite
rude happy sad angry nervous anxious curious eager tired sleepy hungry healthy sick safe dangerous secure
stable steady sudden gradual constant frequent occasional annual monthly weekly daily nightly previous
following recent current future final initial primary secondary major minor main key basic essential
necessary optional useful useless valuable important significant relevant similar different various several
numerous entire whole partial complete perfect broken fixed mobile static active passive positive negative
neutral visible hidden accept achieve acquire adapt add adjust admit adopt advise afford agree allow
announce appear apply approve argue arrange arrive ask assume attach attempt attend avoid bake balance bear
beat begin behave believe belong bend bind blow boil borrow bother break breathe bring build burn buy
calculate carry catch cause celebrate change charge chase check choose claim climb close collect combine
compare compete complain complete concentrate confirm connect consider consist contain continue contribute
convert convince cook copy count cover create cross cut deal decide declare decrease defend define deliver
demand deny depend derive design destroy determine develop differ discover discuss divide draw dress drink
drive drop earn eat educate emerge employ enable encourage enjoy ensure enter escape establish estimate
examine exist expand expect explain explore express extend fail fall feed feel fight finish fit fly focus
fold follow forget forgive form gather generate grow guess handle hang happen hate hear help hide hold hope
hurt identify ignore imagine improve include increase indicate influence inform insist install intend
introduce invent invite involve join judge jump kick kill knock know laugh lay lead lean learn leave lend
lie lift like limit listen live look lose love maintain manage mark marry match mean measure meet mention
mix modify monitor notice obtain occur offer open operate order organize own paint pass pay perform permit
pick place plan play point possess pour prefer prepare present preserve press prevent print produce promise
protect prove provide publish pull purchase push raise reach read realize receive recognize recommend record
reduce reflect refuse regard relate release rely remain remember remove repair repeat replace reply
represent require rescue resist respond rest restore retire return reveal ride ring rise rotate run save say
search seek select sell send separate serve settle shake shape share shine shoot shout sing sink sit sleep
slide smell solve sort speak spend split spread stand start stay steal stick stop store study submit succeed
suffer suggest supply suppose surround survive swim teach tell tend thank think throw touch train travel
treat trust try turn understand unite urge use vary visit wait wake walk want warn wash watch wear win wish
wonder worry write yield
""".split()  # noqa: SIM905

_TECHNICAL = """
algorithm array vector matrix tensor scalar gradient derivative integral equation polynomial logarithm
exponent coefficient parameter hyperparameter variance covariance correlation regression classification
clustering embedding tokenizer token corpus vocabulary lexicon stemming lemmatization ngram bigram trigram
unigram retrieval ranking reranker recall precision accuracy metric benchmark baseline ablation dataset
subset sample batch epoch iteration optimizer momentum learning dropout normalization activation sigmoid
softmax relu transformer attention encoder decoder layer neuron perceptron convolution pooling kernel stride
padding residual bottleneck latent autoencoder diffusion generative discriminative adversarial reinforcement
reward policy agent environment simulation inference training finetuning pretraining distillation
quantization pruning sparsity checkpoint adapter lora prompt completion hallucination grounding citation
context window sequence bidirectional recurrent lstm gru rnn cnn gpt bert llama mistral faiss hnsw ivf bm25
tfidf okapi idf cosine euclidean manhattan hamming jaccard similarity distance nearest neighbor index
inverted posting postings shard replica partition cluster node server client request response endpoint api
rest grpc http https websocket protocol socket port proxy gateway firewall router switch packet latency
throughput bandwidth timeout retry backoff queue stack heap pointer reference allocation garbage collector
thread process mutex semaphore lock deadlock race concurrency parallelism async await coroutine callback
promise future event loop scheduler interrupt kernel driver firmware bootloader compiler interpreter linker
loader bytecode assembly opcode register cache buffer pipeline branch predictor instruction cpu gpu tpu cuda
memory disk ssd filesystem inode directory folder file path symlink permission ownership mount volume
snapshot backup restore archive compression decompression gzip zstd checksum hash sha256 md5 crc32
encryption decryption cipher key certificate signature token oauth jwt session cookie header payload json
yaml toml xml csv parquet avro protobuf schema migration database sqlite postgres mysql redis mongodb table
row column primary foreign constraint transaction commit rollback isolation wal journal vacuum query planner
optimizer join aggregate subquery cursor iterator generator closure decorator lambda function method class
object instance attribute property interface protocol module package library framework dependency version
release changelog semver repository branch merge rebase conflict diff patch pull push fork clone tag
pipeline workflow runner container docker kubernetes pod deployment service ingress helm terraform ansible
provisioning orchestration monitoring logging tracing telemetry alert dashboard metric histogram percentile
quantile median mean average deviation outlier anomaly drift regression bug defect crash exception traceback
stacktrace debugger breakpoint profiler flamegraph benchmark microbenchmark fixture mock stub assertion
coverage linter formatter typing annotation generic template macro preprocessor unicode utf8 ascii encoding
decoding newline whitespace delimiter separator regex parser lexer grammar syntax semantics abstract
concrete runtime compile static dynamic immutable mutable serialization deserialization marshalling codec
stream chunk chunking overlap splitter paragraph document metadata ingestion crawler scraper html markdown
pdf docx spreadsheet ocr transcription audio video frame pixel resolution bitmap raster vector shader
texture render viewport camera lidar sensor telemetry robot actuator controller feedback servo motor voltage
current resistance capacitor transistor diode circuit microcontroller arduino raspberry fpga asic silicon
wafer lithography numpy scipy pandas sklearn pytorch tensorflow jax keras huggingface onnx tokenization
vectorization embeddings reranking retriever generator grader evaluator annotator labeler crowdsourcing
consensus agreement kappa bootstrap confidence interval hypothesis significance pvalue bayesian prior
posterior likelihood markov chain monte carlo sampling stochastic deterministic seed entropy perplexity
logit probability distribution gaussian poisson binomial multinomial dirichlet zipf power law heuristic
greedy beam search dijkstra graph vertex edge tree trie heap hashmap hashtable bloom filter skiplist bitmap
bitset octree quadtree ipv4 ipv6 dns tcp udp tls ssh ftp smtp imap ldap kerberos saml openid x86 arm64 riscv
linux kernel posix systemd cron daemon shell bash terminal console prompt cli gui widget layout stylesheet
css javascript typescript python rust golang java kotlin swift haskell ocaml erlang elixir clojure scala
""".split()  # noqa: SIM905

# Nouns get a plural as well: inflected forms are what makes a real vocabulary a few thousand words wide.
_PLURAL_EXCEPTIONS = dict(
    pair.split(":")
    for pair in """
man:men woman:women child:children person:people foot:feet tooth:teeth mouse:mice leaf:leaves knife:knives
life:lives wife:wives analysis:analyses index:indexes matrix:matrices vertex:vertices datum:data
""".split()  # noqa: SIM905
)
_NO_PLURAL = set(_FUNCTION) | set(
    """
accuracy air ansible api arduino arm64 ascii asic avro bandwidth bash bayesian bert bm25 bread butter
carlo cheese cli clojure cnn coffee concurrency copper corn cotton cpu crc32 css csv cuda data dijkstra
dns docker docx dropout education elixir entropy erlang evidence faiss fpga ftp gaussian golang gold gpt
gpu grpc gru gui gzip haskell health helm hnsw html http https huggingface idf imap inflation
information ipv4 ipv6 iron ivf java javascript jax json jwt kappa keras kerberos knowledge kotlin
kubernetes latency ldap lidar linux llama lora lstm markov md5 mistral momentum money mongodb monte
music mysql news numpy oauth ocaml ocr okapi onnx openid pandas parallelism parquet pdf people
perplexity poisson posix postgres precision protobuf pvalue python pytorch raspberry recall redis relu
research rest rice riscv rnn rust salt saml scala scipy semver sha256 sigmoid silver sklearn smtp
softmax sparsity sqlite ssd ssh steel sugar swift systemd tcp telemetry tensorflow terraform tfidf
throughput tls toml tpu typescript udp unicode utf8 wal water weather wheat wisdom wool x86 xml yaml
zipf zstd
""".split()  # noqa: SIM905
)
_VERBS_START = "accept"  # in _GENERAL, nouns and adjectives come before the verbs, which start here


def _plural(word: str) -> str:
    if word in _PLURAL_EXCEPTIONS:
        return _PLURAL_EXCEPTIONS[word]
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def vocabulary() -> list[str]:
    """Words in Zipf rank order before shuffling: function words, then base words and their plurals."""
    verbs_at = _GENERAL.index(_VERBS_START)
    nouns_and_adjectives, verbs = _GENERAL[:verbs_at], _GENERAL[verbs_at:]
    content = nouns_and_adjectives + verbs + _TECHNICAL
    words: list[str] = []
    seen: set[str] = set()

    def add(word: str) -> None:
        if word not in seen:
            seen.add(word)
            words.append(word)

    for w in _FUNCTION:
        add(w)
    for w in content:
        add(w)
    # Adjectives take no plural, but telling them from nouns needs a dictionary; a rare wrong plural
    # ("quicks") does no harm to a timing corpus, so only verbs and known uncountables are left out.
    for w in nouns_and_adjectives + _TECHNICAL:
        if w not in _NO_PLURAL:
            add(_plural(w))
    for w in verbs:  # third person and -ing forms
        add(_plural(w))
        add((w[:-1] if w.endswith("e") and not w.endswith("ee") else w) + "ing")
    return words


@dataclass(frozen=True)
class CorpusSpec:
    chunks: int  # number of paragraphs = chunks in the whole corpus
    seed: int = 12345
    zipf_s: float = 1.07  # Zipf exponent
    zipf_q: float = 2.7  # Mandelbrot offset: flattens the head like real word counts
    words_per_paragraph: int = 90
    paragraphs_per_document: int = 10
    # Every paragraph is kept strictly between these lengths, so that with chunk_size=800 no two paragraphs
    # fit in one chunk (2 * 401 > 800) and no paragraph is split (790 < 800): one paragraph = one chunk.
    min_chars: int = 401
    max_chars: int = 790


class ZipfWords:
    """Seeded sampler of words from the ranked vocabulary."""

    def __init__(self, spec: CorpusSpec):
        base = vocabulary()
        rng = np.random.default_rng(spec.seed)
        n_function = len(dict.fromkeys(_FUNCTION))
        # Function words keep the head in order; the content words get a seeded random rank each.
        content = base[n_function:]
        order = rng.permutation(len(content))
        self.words = base[:n_function] + [content[i] for i in order]
        ranks = np.arange(1, len(self.words) + 1, dtype=np.float64)
        weights = 1.0 / (ranks + spec.zipf_q) ** spec.zipf_s
        self.p = weights / weights.sum()
        self.cdf = np.cumsum(self.p)
        self.cdf[-1] = 1.0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.searchsorted(self.cdf, rng.random(n), side="right")


class Corpus:
    """Documents (lists of paragraphs) and queries, all derived from one seed."""

    def __init__(self, spec: CorpusSpec):
        self.spec = spec
        self.zipf = ZipfWords(spec)

    def _sentence(self, rng: np.random.Generator) -> str:
        n = int(rng.integers(7, 19))
        words = [self.zipf.words[i] for i in self.zipf.draw(rng, n)]
        if n > 10 and rng.random() < 0.5:  # a comma now and then
            cut = int(rng.integers(4, n - 3))
            words[cut] += ","
        words[0] = words[0][:1].upper() + words[0][1:]
        return " ".join(words) + "."

    def paragraph(self, rng: np.random.Generator) -> str:
        spec = self.spec
        # Sentences run past the target by half a sentence on average, so aim a little low.
        target = int(rng.integers(spec.words_per_paragraph - 16, spec.words_per_paragraph + 5))
        while True:
            sentences: list[str] = []
            length = words = 0
            while words < target:
                s = self._sentence(rng)
                if length + len(s) + 1 > spec.max_chars:
                    break
                sentences.append(s)
                length += len(s) + 1
                words += s.count(" ") + 1
            text = " ".join(sentences)
            if spec.min_chars <= len(text) <= spec.max_chars:
                return text

    def documents(self) -> list[list[str]]:
        """Paragraphs of every document; 8-12 per document, the last one taking what is left over."""
        spec = self.spec
        rng = np.random.default_rng([spec.seed, 1])
        docs: list[list[str]] = []
        left = spec.chunks
        while left > 0:
            n = int(rng.integers(spec.paragraphs_per_document - 2, spec.paragraphs_per_document + 3))
            n = min(n, left)
            docs.append([self.paragraph(rng) for _ in range(n)])
            left -= n
        return docs

    def queries(self, n: int, stop_words: frozenset[str], seed_offset: int = 0) -> list[str]:
        """n queries of 3-6 distinct words from the same distribution, stop words left out (so every query
        has 3-6 terms the lexical indexes can match)."""
        rng = np.random.default_rng([self.spec.seed, 2, seed_offset])
        out: list[str] = []
        for _ in range(n):
            want = int(rng.integers(3, 7))
            chosen: list[str] = []
            while len(chosen) < want:
                w = self.zipf.words[int(self.zipf.draw(rng, 1)[0])]
                if w not in stop_words and w not in chosen:
                    chosen.append(w)
            out.append(" ".join(chosen))
        return out


def stop_words(tokenizer: Callable[[str], list[str]], words: Iterable[str]) -> frozenset[str]:
    """The words a tokenizer does not keep as they are (its stop words), found through its public call;
    what `Corpus.queries` leaves out so that every query term can match."""
    return frozenset(w for w in words if tokenizer(w) != [w])


def document_name(i: int) -> str:
    return f"doc_{i:06d}.txt"


def write_documents(folder: Path, docs: list[list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, paragraphs in enumerate(docs):
        (folder / document_name(i)).write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")


def edit_documents(
    folder: Path, docs: list[list[str]], corpus: Corpus, fraction: float, round_: int
) -> Iterator[int]:
    """Replace one paragraph in `fraction` of the documents (a different seeded choice per round), both
    in `docs` and on disk; yields the edited document numbers."""
    rng = np.random.default_rng([corpus.spec.seed, 3, round_])
    n = max(1, round(len(docs) * fraction))
    for i in sorted(rng.choice(len(docs), size=n, replace=False).tolist()):
        j = int(rng.integers(len(docs[i])))
        docs[i][j] = corpus.paragraph(rng)
        (folder / document_name(i)).write_text("\n\n".join(docs[i]) + "\n", encoding="utf-8")
        yield i
