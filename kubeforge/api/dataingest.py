"""The DataIngest resource: crawl public data politely and safely, clean it, deduplicate it and
publish it as a versioned dataset in object storage.

The operator reads these models to provision the bucket and run the crawler shards, the crawler
reads `sources`, `crawl`, `processing` and `output` as its config (`kubeforge.crawlconfig`), and
the local runner validates resources with them. Condition types, reasons, phases and the reasons a
page or document is dropped are named here, next to the types that carry them.

Every field's description becomes `kubectl explain` text, so it is written for a user.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import AfterValidator, AwareDatetime, Field

from kubeforge.api.filters import DocumentFilters
from kubeforge.api.meta import (
    DNS1123_SUBDOMAIN,
    CaBundle,
    CamelModel,
    Condition,
    Int32,
    Int64,
    ObjectMeta,
    PodStartFailure,
    ResourceNames,
    ResourceRequirements,
    StatusModel,
    cel_rule,
    defaulted,
    immutable,
    set_of,
    unique,
)

DATA_INGEST = ResourceNames(
    kind="DataIngest",
    plural="dataingests",
    singular="dataingest",
    short_names=("di",),
    categories=("kubeforge",),
)

SOURCE_LIST_LIMIT = 1000
"""The most seeds, sitemaps, domains or patterns in one list (bounds the apiserver's CEL cost)."""

NETWORK_LIST_LIMIT = 64
HTTP_URL = r"^https?://[^\s/?#@]+([/?#]\S*)?$"
URL_MAX_LENGTH = 2048
OBJECT_PREFIX = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?$"
OBJECT_LOCATION = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?|file:///\S*)$"
HOST_NAME = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)$"
# RFC 9309: the product token a crawler matches robots.txt groups with.
PRODUCT_NAME = r"^[A-Za-z_-]+$"
LANGUAGE_CODE = r"^[a-z]{2,3}$"
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
MEBIBYTE = 1024 * 1024


def _cron_field(value: str) -> str:
    """A cron field: `*` or a value or range, each with an optional step, in a comma list."""
    item = rf"(\*|{value}(-{value})?)(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


# A cron schedule of five fields (minute, hour, day of month, month, day of week; months and days
# by number or three-letter name), or one of the @ shorthands. croniter checks the names.
CRON_SCHEDULE = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " +".join(
        _cron_field(value)
        for value in (
            r"[0-5]?[0-9]",
            r"([01]?[0-9]|2[0-3])",
            r"(0?[1-9]|[12][0-9]|3[01])",
            r"(0?[1-9]|1[0-2]|[A-Za-z]{3})",
            r"([0-7]|[A-Za-z]{3})",
        )
    )
    + ")$"
)


class DataIngestPhase(StrEnum):
    """Where a DataIngest is in its life, in one word."""

    PROVISIONING = "Provisioning"
    CRAWLING = "Crawling"
    DEDUPLICATING = "Deduplicating"
    PUBLISHING = "Publishing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class DataIngestConditionType(StrEnum):
    """The condition types of a DataIngest: kstatus' Ready, Reconciling and Stalled, then ours."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    STORAGE_READY = "StorageReady"
    CRAWLING = "Crawling"
    DEDUPLICATING = "Deduplicating"
    PUBLISHED = "Published"
    FAILED = "Failed"


class DataIngestReason(StrEnum):
    """Why a DataIngest condition has its status: the `reason` of its conditions and Events."""

    # Storage.
    BUCKET_CREATED = "BucketCreated"
    BUCKET_FOUND = "BucketFound"
    BUCKET_MISSING = "BucketMissing"
    STORAGE_FEATURE_UNSUPPORTED = "StorageFeatureUnsupported"
    CREDENTIALS_MISSING = "CredentialsMissing"
    CA_BUNDLE_MISSING = "CaBundleMissing"
    STORAGE_ERROR = "StorageError"
    DATA_DELETED = "DataDeleted"
    # Work in progress.
    SHARDS_STARTING = "ShardsStarting"
    SHARDS_RUNNING = "ShardsRunning"
    DEDUPLICATION_RUNNING = "DeduplicationRunning"
    WAITING_FOR_SCHEDULE = "WaitingForSchedule"  # a finished run, until spec.schedule's next
    SCHEDULED_RUN = "ScheduledRun"
    # A crawl or publish pod cannot start.
    IMAGE_PULL_BACK_OFF = PodStartFailure.IMAGE_PULL_BACK_OFF.value
    ERR_IMAGE_PULL = PodStartFailure.ERR_IMAGE_PULL.value
    CREATE_CONTAINER_CONFIG_ERROR = PodStartFailure.CREATE_CONTAINER_CONFIG_ERROR.value
    UNSCHEDULABLE = PodStartFailure.UNSCHEDULABLE.value
    # Done.
    PUBLISHED = "Published"
    # Terminal failures: an exit code that a retry cannot fix, or a pod that failed on every try.
    SHARD_FAILED = "ShardFailed"
    PUBLISH_FAILED = "PublishFailed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"


class DropReason(StrEnum):
    """Why the crawler did not fetch a URL or did not keep a document (status.counters keys)."""

    # Before fetching.
    OFF_SCOPE = "OffScope"
    UNSUPPORTED_SCHEME = "UnsupportedScheme"
    MAX_PAGES = "MaxPages"
    ROBOTS_DISALLOWED = "RobotsDisallowed"
    ROBOTS_UNAVAILABLE = "RobotsUnavailable"
    BLOCKED_ADDRESS = "BlockedAddress"
    # While fetching.
    TLS_UNTRUSTED = "TlsUntrusted"
    TLS_EXPIRED = "TlsExpired"
    TLS_HOST_MISMATCH = "TlsHostMismatch"
    TOO_MANY_REDIRECTS = "TooManyRedirects"
    REDIRECT_LOOP = "RedirectLoop"
    INSECURE_REDIRECT = "InsecureRedirect"
    TOO_LARGE = "TooLarge"
    TIMEOUT = "Timeout"
    NETWORK_ERROR = "NetworkError"
    HTTP_ERROR = "HttpError"
    UNSUPPORTED_CONTENT_TYPE = "UnsupportedContentType"
    UNSUPPORTED_ENCODING = "UnsupportedEncoding"
    # After extraction (the document filters' reasons are named `Filter:rule`, see
    # kubeforge.api.filters).
    NO_TEXT = "NoText"
    EXACT_DUPLICATE = "ExactDuplicate"
    NEAR_DUPLICATE = "NearDuplicate"
    # WARC records (sources.warc), besides TooLarge, HttpError and UnsupportedContentType.
    MALFORMED_RECORD = "MalformedRecord"
    TRUNCATED_RECORD = "TruncatedRecord"


class EncryptionMode(StrEnum):
    """Default server-side encryption of the bucket."""

    NONE = "None"
    AES256 = "AES256"
    KMS = "aws:kms"


class DeletionPolicy(StrEnum):
    """What happens to the bucket's data when the DataIngest is deleted."""

    RETAIN = "Retain"
    DELETE = "Delete"


class OutputFormat(StrEnum):
    """The file format of the dataset's parts."""

    JSONL = "jsonl"
    PARQUET = "parquet"


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} must be a CIDR such as 10.0.0.0/8 or fd00::/8") from None
    return value


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron schedule")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"{value!r} is not a regular expression: {error}") from None
    return value


HttpUrl = Annotated[str, Field(pattern=HTTP_URL, max_length=URL_MAX_LENGTH)]
ObjectPrefix = Annotated[str, Field(pattern=OBJECT_PREFIX, max_length=URL_MAX_LENGTH)]
ObjectLocation = Annotated[str, Field(pattern=OBJECT_LOCATION, max_length=URL_MAX_LENGTH)]
HostName = Annotated[str, Field(pattern=HOST_NAME, max_length=253)]
CronSchedule = Annotated[str, Field(pattern=CRON_SCHEDULE, max_length=128), AfterValidator(_cron)]
UrlPattern = Annotated[str, AfterValidator(_regex), Field(min_length=1, max_length=1024)]
LanguageCode = Annotated[str, Field(pattern=LANGUAGE_CODE)]
Cidr = Annotated[
    str,
    AfterValidator(_cidr),
    Field(
        max_length=64,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "isCIDR(self)", "message": "must be a CIDR such as 10.0.0.0/8"}
            ]
        },
    ),
]


def _set_of(description: str) -> Any:
    """A list field of unique sources, empty when omitted."""
    return set_of(description, SOURCE_LIST_LIMIT)


class WarcSources(CamelModel):
    """WARC and WET files (e.g. Common Crawl's) whose records are imported as documents."""

    files: Annotated[list[ObjectLocation], AfterValidator(unique)] = _set_of(
        "WARC (.warc.gz) or WET (.warc.wet.gz) files, each by URI (s3://bucket/key or "
        "file:///path)."
    )
    prefixes: Annotated[list[ObjectLocation], AfterValidator(unique)] = _set_of(
        "Prefixes whose .warc.gz and .warc.wet.gz files are all read."
    )
    path_indexes: Annotated[list[ObjectLocation], AfterValidator(unique)] = _set_of(
        "Lists of files, one a line, gzipped or not, such as Common Crawl's warc.paths.gz or "
        "wet.paths.gz. A line that is no URI is a key in the bucket that holds the list (s3://) "
        "or a path under the list's directory (file://).",
    )
    endpoint: HttpUrl | None = Field(
        default=None,
        description="The S3 endpoint that serves the files (e.g. https://s3.amazonaws.com for "
        "Common Crawl's bucket). Omitted: the crawler pods' storage endpoint.",
    )
    anonymous: bool = Field(
        default=False,
        description="Read the files unsigned, as a public bucket allows. Otherwise they are "
        "read with the crawler pods' storage credentials.",
    )

    @property
    def given(self) -> bool:
        """Whether any file, prefix or index is named."""
        return bool(self.files or self.prefixes or self.path_indexes)


class SourcesSpec(CamelModel):
    """Where the crawl starts and which URLs it may visit."""

    seeds: Annotated[list[HttpUrl], AfterValidator(unique)] = _set_of(
        "URLs the crawl starts from (http or https)."
    )
    sitemaps: Annotated[list[HttpUrl], AfterValidator(unique)] = _set_of(
        "Sitemap URLs (XML, sitemap indexes and gzip allowed) whose pages are crawled as seeds. "
        "Sitemaps that robots.txt lists are read too.",
    )
    allowed_domains: Annotated[list[HostName], AfterValidator(unique)] = _set_of(
        "Hosts the crawl may visit, each with its subdomains (example.com allows "
        "docs.example.com). Empty: the hosts of the seeds and sitemaps.",
    )
    include_patterns: Annotated[list[UrlPattern], AfterValidator(unique)] = _set_of(
        "Regular expressions (Python syntax, searched in the whole URL); when any is set, a URL "
        "must match one of them.",
    )
    exclude_patterns: Annotated[list[UrlPattern], AfterValidator(unique)] = _set_of(
        "Regular expressions; a URL that matches any of them is not visited."
    )
    object_prefixes: Annotated[list[ObjectPrefix], AfterValidator(unique)] = _set_of(
        "Object-storage prefixes (s3://bucket/prefix) whose objects are imported as documents, "
        "e.g. data a partner shares: JSON lines (.jsonl, .jsonl.gz; a `text` field, optional "
        "`url`, `title`), Parquet (.parquet; the same columns) and plain text (.txt: one "
        "document each). They pass through the same filters and deduplication as crawled pages, "
        "read with the crawler pods' storage credentials.",
    )
    warc: WarcSources = defaulted(
        WarcSources,
        "WARC and WET files whose records become documents: HTML `response` records of status "
        "200 are extracted like fetched pages, WET `conversion` records are text already; both "
        "pass through the same filters, PII scrubbing and deduplication. The files are split "
        "between the shards and streamed in ranges; a record larger than "
        "crawl.maxResponseBytes, malformed or truncated is dropped and counted.",
    )
    max_depth: Int32 = Field(
        default=3, ge=0, description="Links followed from a seed: 0 fetches the seeds only."
    )
    max_pages: Int64 = Field(
        default=10000,
        ge=1,
        description="Most pages fetched in all, split evenly between the shards.",
    )

    @cel_rule(
        "(has(self.seeds) && size(self.seeds) > 0) || "
        "(has(self.sitemaps) && size(self.sitemaps) > 0) || "
        "(has(self.objectPrefixes) && size(self.objectPrefixes) > 0) || "
        "(has(self.warc) && ("
        "(has(self.warc.files) && size(self.warc.files) > 0) || "
        "(has(self.warc.prefixes) && size(self.warc.prefixes) > 0) || "
        "(has(self.warc.pathIndexes) && size(self.warc.pathIndexes) > 0)))",
        "at least one seed, sitemap, object prefix or WARC file, prefix or index must be given",
    )
    def _has_a_start(self) -> bool:
        return bool(self.seeds or self.sitemaps or self.object_prefixes or self.warc.given)


class UserAgent(CamelModel):
    """How the crawler identifies itself; site owners read it in their logs and robots.txt."""

    product: str = Field(
        min_length=1,
        max_length=64,
        pattern=PRODUCT_NAME,
        description="Product token (letters, '_' and '-'), matched against robots.txt "
        "User-agent lines, e.g. AcmeResearchBot.",
    )
    contact: str = Field(
        min_length=3,
        max_length=256,
        pattern=r"^\S+$",
        description="A URL or e-mail address where site owners can reach you.",
    )

    @property
    def header(self) -> str:
        """The User-Agent header: `product/1.0 (+contact)`."""
        return f"{self.product}/1.0 (+{self.contact})"


class TlsPolicy(CamelModel):
    """How HTTPS is checked: certificates and host names are always verified."""

    ca_bundle: CaBundle | None = Field(
        default=None,
        description="Extra CA certificates for intranet sites, trusted besides the system's. A "
        "certificate that does not verify drops the URL as TlsUntrusted, TlsExpired or "
        "TlsHostMismatch.",
    )
    allow_https_to_http_redirects: bool = Field(
        default=False,
        description="Follow a redirect from an https URL to an http one. By default such a "
        "redirect is dropped as InsecureRedirect.",
    )


class CrawlPolicy(CamelModel):
    """How pages are fetched: identification, robots.txt, politeness, limits and safety."""

    user_agent: UserAgent = Field(description="How the crawler identifies itself. Required.")
    obey_robots_txt: bool = Field(
        default=True,
        description="Obey robots.txt (RFC 9309): 4xx means allowed; 5xx, timeouts and network "
        "errors mean nothing is fetched from the host until robots.txt can be read.",
    )
    robots_cache_seconds: Int64 = Field(
        default=3600, ge=1, description="How long a host's robots.txt is reused before refetching."
    )
    per_host_concurrency: Int32 = Field(
        default=1, ge=1, le=16, description="Requests in flight to one host at a time."
    )
    min_delay_seconds: float = Field(
        default=1.0, ge=0, description="Least time between two requests to one host."
    )
    max_crawl_delay_seconds: float = Field(
        default=30.0,
        ge=0,
        description="robots.txt Crawl-delay is honoured up to this many seconds.",
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Most time to open a connection."
    )
    first_byte_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Most time from sending a request to its response headers."
    )
    total_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Most time for one request, body included."
    )
    max_response_bytes: Int64 = Field(
        default=16 * MEBIBYTE,
        ge=1024,
        description="Largest response body kept, counted after decompression (gzip, deflate, br, "
        "zstd); larger ones are dropped as TooLarge.",
    )
    max_redirects: Int32 = Field(
        default=5, ge=0, le=20, description="Redirects followed for one URL."
    )
    allowed_content_types: Annotated[list[str], AfterValidator(unique)] = Field(
        default_factory=lambda: ["text/html", "application/xhtml+xml", "text/plain"],
        min_length=1,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Media types whose responses are kept.",
    )
    retries: Int32 = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a request that failed with a timeout, a network error, 429 or "
        "5xx, with exponential backoff.",
    )
    backoff_seconds: float = Field(
        default=2.0, gt=0, description="Wait before the first retry; it doubles with each retry."
    )
    max_retry_after_seconds: float = Field(
        default=120.0, ge=0, description="A server's Retry-After is honoured up to this long."
    )
    allowed_networks: Annotated[list[Cidr], AfterValidator(unique)] = Field(
        default_factory=list,
        max_length=NETWORK_LIST_LIMIT,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Networks the crawler may connect to although they are not public (e.g. "
        "10.0.0.0/8 for an intranet). By default loopback, private, link-local, CGNAT, "
        "metadata and other non-public addresses are refused, for every redirect too.",
    )
    tls: TlsPolicy = defaulted(TlsPolicy, "How HTTPS certificates and redirects are checked.")

    @cel_rule(
        "self.minDelaySeconds <= self.maxCrawlDelaySeconds",
        "minDelaySeconds must not exceed maxCrawlDelaySeconds",
        field_path=".minDelaySeconds",
    )
    def _delays_ordered(self) -> bool:
        return self.min_delay_seconds <= self.max_crawl_delay_seconds


class PiiScrubbing(CamelModel):
    """Personal data replaced in the text before it is stored."""

    emails: bool = Field(default=True, description="Replace e-mail addresses with <EMAIL>.")
    phone_numbers: bool = Field(default=True, description="Replace phone numbers with <PHONE>.")


class Deduplication(CamelModel):
    """Duplicate removal: exact (same text) and near (MinHash over word shingles)."""

    exact: bool = Field(default=True, description="Remove documents whose text is identical.")
    near_duplicates: bool = Field(
        default=True, description="Remove documents too similar to one already kept."
    )
    threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity of word shingles above which a document is a "
        "near duplicate.",
    )
    shingle_words: Int32 = Field(
        default=5, ge=1, le=32, description="Words per shingle (n-gram) compared."
    )
    permutations: Int32 = Field(
        default=128, ge=16, le=1024, description="MinHash permutations (signature length)."
    )


class ProcessingSpec(CamelModel):
    """How fetched pages become documents: extraction, filters, PII scrubbing, deduplication."""

    languages: Annotated[list[LanguageCode], AfterValidator(unique)] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Keep only documents detected in these languages (ISO 639-1, e.g. en; "
        "reason Language:language). Empty: any language. `filters.language` sets the score "
        "threshold.",
    )
    filters: DocumentFilters = defaulted(
        DocumentFilters,
        "FineWeb's filters: URL blocklists, language score, Gopher repetition and quality, C4 "
        "and FineWeb rules, each rule with its own threshold and drop reason.",
    )
    pii: PiiScrubbing = defaulted(PiiScrubbing, "Personal data scrubbed from the text.")
    dedup: Deduplication = defaulted(Deduplication, "Exact and near-duplicate removal.")


TOKENIZER_MIN_VOCABULARY = 512
TOKENIZER_MAX_VOCABULARY = 1 << 20


class TokenizerTraining(CamelModel):
    """A byte-level BPE tokenizer trained on the published version's kept documents."""

    vocab_size: Int32 = Field(
        ge=TOKENIZER_MIN_VOCABULARY,
        le=TOKENIZER_MAX_VOCABULARY,
        description="Most tokens in the vocabulary: the 256 bytes, the end-of-document token and "
        "the merges learned from the text (fewer when the text has no more pairs to merge).",
    )
    min_frequency: Int32 = Field(
        default=2, ge=1, description="Fewest occurrences of a pair of tokens that are merged."
    )


class OutputSpec(CamelModel):
    """How documents are written."""

    format: OutputFormat = Field(
        default=OutputFormat.JSONL,
        description="jsonl: gzip-compressed JSON lines; parquet: Parquet files (zstd) with the "
        "same columns. The trainer reads both.",
    )
    part_max_documents: Int32 = Field(
        default=10000, ge=1, description="Most documents in one part file."
    )
    part_max_bytes: Int64 = Field(
        default=64 * MEBIBYTE,
        ge=1024,
        description="Most bytes of text in one part file, before compression.",
    )
    commit_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A shard commits its documents and crawl state at least this often; a "
        "restarted shard resumes from its last commit.",
    )
    tokenizer: TokenizerTraining | None = Field(
        default=None,
        description="Train a byte-level BPE tokenizer on the version when it is published, write "
        "it as tokenizer.json beside the manifest and record each part's token count. Omitted: "
        "no tokenizer (the trainer's byte-level one needs none).",
    )


class SecretKeyNames(CamelModel):
    """A Secret holding S3 credentials, and the keys they are under."""

    name: str = Field(max_length=253, pattern=DNS1123_SUBDOMAIN, description="Name of the Secret.")
    access_key_id_key: str = Field(
        default="AWS_ACCESS_KEY_ID", min_length=1, description="Key of the access key id."
    )
    secret_access_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY", min_length=1, description="Key of the secret key."
    )


class StorageSpec(CamelModel):
    """The S3-compatible bucket the dataset is written to."""

    bucket: str = immutable("Bucket name.", min_length=3, max_length=63, pattern=BUCKET_NAME)
    prefix: str = Field(
        default="datasets",
        max_length=512,
        pattern=r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$",
        description="Key prefix under which datasets/NAME/vN/ are written.",
    )
    endpoint: HttpUrl | None = Field(
        default=None, description="S3 endpoint URL. Omitted: AWS S3 of the region."
    )
    region: str | None = Field(default=None, max_length=64, description="Bucket region.")
    create: bool = Field(default=True, description="Create the bucket when it does not exist.")
    versioning: bool = Field(default=True, description="Turn on object versioning.")
    encryption: EncryptionMode = Field(
        default=EncryptionMode.AES256,
        description="Default server-side encryption: None, AES256 or aws:kms.",
    )
    raw_data_expiration_days: Int32 | None = Field(
        default=None,
        ge=1,
        description="Expire the crawl's raw state (checkpoints, frontier exchange) after this "
        "many days. Omitted: kept.",
    )
    public_access_block: bool = Field(
        default=True, description="Block all public access to the bucket."
    )
    ca_bundle: CaBundle | None = Field(
        default=None,
        description="CA certificates that an https endpoint signed by a private CA is verified "
        "with, by the operator and the crawler pods (AWS_CA_BUNDLE), instead of the system's.",
    )
    credentials_secret_ref: SecretKeyNames | None = Field(
        default=None,
        description="Secret with S3 credentials. Omitted: workload identity of the pods' "
        "ServiceAccount.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.RETAIN,
        description="Retain keeps the data when the DataIngest is deleted; Delete removes the "
        "datasets it wrote.",
    )


class DataIngestSpec(CamelModel):
    """The desired state of a DataIngest."""

    sources: SourcesSpec = Field(description="Where the crawl starts and what it may visit.")
    crawl: CrawlPolicy = Field(description="How pages are fetched.")
    shards: Int32 = immutable(
        "Crawler pods that run in parallel; hosts are split between them, so one host is "
        "only ever fetched by one pod.",
        default=1,
        ge=1,
        le=1000,
    )
    processing: ProcessingSpec = defaulted(ProcessingSpec, "How fetched pages become documents.")
    output: OutputSpec = defaulted(OutputSpec, "How documents are written.")
    storage: StorageSpec = Field(description="Where the dataset is written.")
    schedule: CronSchedule | None = Field(
        default=None,
        description="Cron schedule in UTC on which the crawl runs again into the next dataset "
        "version (PREFIX/NAME/vN), e.g. @weekly or 0 3 * * 1 (minute, hour, day of month, "
        "month, day of week). The first crawl starts when the DataIngest is created; earlier "
        "versions stay in storage, and status.dataset moves to a new version once it is "
        "published. A run starts only when the previous one has finished: a run that fell due "
        "meanwhile (or while the operator was down) starts once, as soon as it can. A failed run "
        "does not stop the schedule, and its version number is not reused. Omitted: crawl once.",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Container image of the crawler pods. Omitted: the operator's default.",
    )
    resources: ResourceRequirements = defaulted(
        ResourceRequirements, "Compute resources of each crawler pod."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="ServiceAccount the crawler pods run as (e.g. for workload identity).",
    )


class CrawlCounters(StatusModel):
    """What the crawl has done so far, summed over its shards."""

    pages_by_status: dict[str, Int64] = Field(
        default_factory=dict,
        description="Responses by status class (2xx, 3xx, 4xx, 5xx).",
    )
    bytes_fetched: Int64 = Field(default=0, description="Response bytes received.")
    documents_kept: Int64 = Field(default=0, description="Documents written to the dataset.")
    dropped_by_reason: dict[str, Int64] = Field(
        default_factory=dict,
        description="URLs and documents dropped, by reason (e.g. RobotsDisallowed, TooLarge, "
        "BlockedAddress, GopherRepetition:dup_line_frac).",
    )
    duplicates_removed: Int64 = Field(
        default=0, description="Exact and near duplicates removed, in shards and globally."
    )

    def plus(self, other: CrawlCounters) -> CrawlCounters:
        """The sum of two sets of counters (e.g. of two shards)."""

        def summed(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
            keys = sorted(first.keys() | second.keys())
            return {key: first.get(key, 0) + second.get(key, 0) for key in keys}

        return CrawlCounters(
            pages_by_status=summed(self.pages_by_status, other.pages_by_status),
            bytes_fetched=self.bytes_fetched + other.bytes_fetched,
            documents_kept=self.documents_kept + other.documents_kept,
            dropped_by_reason=summed(self.dropped_by_reason, other.dropped_by_reason),
            duplicates_removed=self.duplicates_removed + other.duplicates_removed,
        )


class DatasetStatus(StatusModel):
    """The latest published dataset."""

    uri: str = Field(description="Where the dataset is (s3://bucket/prefix/NAME/vN).")
    version: Int32 = Field(description="Dataset version, counting from 1.")
    documents: Int64 = Field(description="Documents in the dataset.")
    bytes: Int64 = Field(description="Bytes of its parts.")
    manifest: str = Field(description="URI of its manifest.")


class StorageStatus(StatusModel):
    """The bucket as the operator last saw it."""

    bucket: str = Field(description="Bucket name.")
    ready: bool = Field(description="Whether the bucket exists with the requested settings.")


class DataIngestStatus(StatusModel):
    """The observed state of a DataIngest, written by the operator."""

    phase: DataIngestPhase | None = Field(
        default=None,
        description="Provisioning, Crawling, Deduplicating, Publishing, Succeeded or Failed.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Reconciling and Stalled (kstatus), StorageReady, Crawling, "
        "Deduplicating, Published and Failed, each with a reason.",
    )
    observed_generation: Int64 | None = Field(
        default=None, description="The metadata.generation this status describes."
    )
    counters: CrawlCounters = Field(
        default_factory=CrawlCounters, description="What the crawl has done so far."
    )
    dataset: DatasetStatus | None = Field(default=None, description="The latest published dataset.")
    storage: StorageStatus | None = Field(default=None, description="The bucket.")
    current_version: Int32 = Field(
        default=1,
        description="The dataset version the current (or last) run builds; dataset.version is "
        "the latest one published.",
    )
    last_schedule_time: AwareDatetime | None = Field(
        default=None,
        description="When the latest scheduled run (spec.schedule) fell due. Omitted before the "
        "first one.",
    )
    next_schedule_time: AwareDatetime | None = Field(
        default=None,
        description="When the next scheduled run falls due; while a run is still going, it "
        "starts once that one has finished.",
    )
    start_time: AwareDatetime | None = Field(
        default=None, description="When the current crawl started."
    )
    completion_time: AwareDatetime | None = Field(
        default=None, description="When the current crawl succeeded or failed."
    )


class DataIngest(CamelModel):
    """DataIngest crawls public web data politely and safely in parallel pods, cleans and
    deduplicates it, and publishes it as a versioned dataset in an S3-compatible bucket."""

    api_version: Literal["kubeforge.dev/v1alpha1"] = Field(
        default="kubeforge.dev/v1alpha1", description="kubeforge.dev/v1alpha1."
    )
    kind: Literal["DataIngest"] = Field(default="DataIngest", description="DataIngest.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: DataIngestSpec = Field(description="The desired state of the ingest.")
    status: DataIngestStatus = Field(
        default_factory=DataIngestStatus, description="The observed state, set by the operator."
    )
