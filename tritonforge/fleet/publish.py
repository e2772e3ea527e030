"""``publish_repository``: a model repository into object storage, in an order a polling reader
(Triton reading ``s3://`` itself, or :mod:`.mirror`) can never load half of.

The order of one publish:

1. the index (the marker that this tool owns the prefix) on a first publish;
2. configs that would make Triton load a version still being uploaded (policy ``latest`` or
   ``all``) are first pinned to the versions they serve now;
3. the new versions' files, then the index lists them;
4. other files of the models (labels, warmup data), then every changed ``configs/<host>.pbtxt``
   and ``config.pbtxt`` (pinned ones back to what the repository says), then the index;
5. removals: configs of models gone from the repository first, then versions that ``keep``
   retires and files gone from the repository, each taken out of the index before it is deleted;
6. ``manifest.json``, then the index with this publish's stamp.

What changes is told by sha256 (of each file, kept as object metadata and in the index): a
second publish of an unchanged repository uploads nothing. A published version is never
overwritten in place: a version folder whose files differ from the published copy is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonforge.errors import BuildError
from tritonforge.repository import config as config_file
from tritonforge.repository.config import VersionPolicy, version_policy, with_version_policy
from tritonforge.repository.layout import CONFIG_FILE, MANIFEST_FILE, config_files

from .errors import FleetError
from .index import INDEX_FILE, TOOL, Index
from .location import BucketUrl
from .progress import Progress, Silent
from .store import BY_KEY, Store
from .tree import config_order, local_files, models_of, part_of, sha256_file, versions_of


@dataclass(frozen=True)
class PublishReport:
    url: str
    uploaded: tuple[str, ...]  # in the order they were put
    deleted: tuple[str, ...]
    pinned: tuple[str, ...]  # configs pinned to their served versions while new versions went up
    unchanged: int  # files already published with the same content
    bytes: int

    @property
    def changed(self) -> bool:
        return bool(self.uploaded or self.deleted)

    def line(self) -> str:
        if not self.changed:
            return f"{self.url}: nothing to publish ({self.unchanged} files already published, unchanged)"
        from .progress import human

        pinned = f"; {len(self.pinned)} configs pinned during the upload" if self.pinned else ""
        return (f"{self.url}: uploaded {len(self.uploaded)} files ({human(self.bytes)}), deleted {len(self.deleted)}, "
                f"{self.unchanged} unchanged{pinned}")


def publish_repository(repo: Path, url: str | BucketUrl, *, endpoint_url: str | None = None, keep: int | None = None,
                       progress: Progress | None = None, on_step=None, store: Store | None = None,
                       versions_as_published: bool = False) -> PublishReport:
    """Publish ``repo`` to ``url`` (``s3://bucket/prefix``); see the module's docstring for the order.

    ``keep``: keep the ``keep`` highest versions of each model in the bucket, and those its configs
    serve; older ones are deleted after the configs that stop serving them are up (None: keep all).
    ``on_step(action, rel)`` is called after every object written or deleted (tests read the
    bucket there). ``versions_as_published``: the local copy holds empty version folders (a copy
    made to change configs, see :mod:`.copy`); its versions are taken as the published ones.
    Raises :class:`FleetError` before writing anything when the prefix holds objects this tool did
    not publish, or a published version would change in place.
    """
    repo = Path(repo)
    url = url if isinstance(url, BucketUrl) else BucketUrl.parse(url)
    if keep is not None and keep < 1:
        raise FleetError(f"--keep {keep}: keep at least 1 version of each model")
    if not (repo / MANIFEST_FILE).is_file():
        raise FleetError(f"{repo}: not a tritonforge repository (no {MANIFEST_FILE}); build it with build-repo first")
    store = store or Store(url, endpoint_url)
    from tritonforge.builder.staging import exclusive  # here: the builder package imports the frameworks

    try:
        with exclusive(repo):  # a build moving a version in while we read would publish half of it
            return _Publish(repo, url, store, keep, progress, on_step, versions_as_published).run()
    except BuildError as exc:
        raise FleetError(f"{repo}: is being written by another command ({exc}); nothing published") from None


class _Publish:
    def __init__(self, repo, url, store, keep, progress, on_step, versions_as_published) -> None:
        self.repo, self.url, self.store, self.keep = repo, url, store, keep
        self.progress, self.on_step = progress, on_step or (lambda action, rel: None)
        self.versions_as_published = versions_as_published
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        self.pinned: list[str] = []
        self.bytes = 0

    # ---- reading both sides ------------------------------------------------------------
    def owned_index(self) -> tuple[Index, bool, set[str]]:
        """The index, whether this is the first publish, and objects of an interrupted publish."""
        listing = self.store.list()
        raw = self.store.read(INDEX_FILE)
        if raw is None:
            if listing:
                first = sorted(listing)[0]
                raise FleetError(f"{self.url}: holds {len(listing)} objects not published by publish-repo (such as {first}); "
                                 f"publish to an empty prefix, or remove them; nothing published")
            return Index(), True, set()
        index = Index.from_bytes(raw, str(self.url))
        strays = set(listing) - set(index.files) - {INDEX_FILE}
        for rel in sorted(strays):
            if self.store.metadata(rel).get(BY_KEY) != TOOL:
                raise FleetError(f"{self.url}: {rel} was not published by publish-repo; refusing to publish over it")
        return index, False, strays

    def refuse_rewrites(self, local: dict, remote: dict) -> None:
        for model in sorted(models_of(local)):
            published = versions_of(remote, model)
            for version, files in sorted(versions_of(local, model).items()):
                if version in published and files != published[version]:
                    changed = sorted(set(files.items()) ^ set(published[version].items()))[0][0]
                    raise FleetError(
                        f"model '{model}' version {version}: {changed} differs from the copy published at {self.url}; "
                        f"a published version is never overwritten in place: build a new version; nothing published")

    def kept_versions(self, local: dict, remote: dict) -> dict[str, set[int]]:
        kept = {}
        for model in models_of(local):
            every = sorted(set(versions_of(local, model)) | set(versions_of(remote, model)))
            if self.keep is None:
                kept[model] = set(every)
                continue
            served = set()
            try:
                for path in config_files(self.repo / model):
                    if path.is_file():
                        served |= set(version_policy(config_file.read(path)).served(every))
            except config_file.ConfigError as exc:
                raise FleetError(f"{exc}; nothing published") from None
            kept[model] = served | set(every[-self.keep:])
        return kept

    # ---- writing ---------------------------------------------------------------------
    def put_index(self, index: Index) -> None:
        self.store.put_bytes(INDEX_FILE, index.to_bytes())
        self.on_step("index", INDEX_FILE)

    def upload(self, rels, local: dict, files: dict[str, Path], index: Index) -> None:
        for rel in rels:
            path = files[rel]
            size = path.stat().st_size
            self.store.upload(rel, path, local[rel], self.progress.start(rel, size))
            self.uploaded.append(rel)
            self.bytes += size
            self.on_step("put", rel)
        if rels:
            index.files.update({rel: local[rel] for rel in rels})
            self.put_index(index)

    def remove(self, rels, index: Index) -> None:
        rels = sorted(rels)
        if not rels:
            return
        for rel in rels:
            index.files.pop(rel, None)
        self.put_index(index)  # out of the index first: a reader stops taking them before they go
        self.store.delete(rels)
        self.deleted.extend(rels)
        for rel in rels:
            self.on_step("delete", rel)

    def pin(self, model: str, new_versions: set[int], remote: dict, index: Index) -> None:
        """Configs in the bucket whose policy would load a version of ``new_versions`` as soon as its
        folder appears are rewritten to serve exactly what they serve now, until the files are up.
        The index names them first, so that a publish cut short is completed by the next one."""
        before_versions = sorted(versions_of(remote, model))
        after_versions = sorted(set(before_versions) | new_versions)
        pins = {}
        for rel in sorted((r for r in remote if part_of(r).kind == "config" and part_of(r).model == model), key=config_order):
            data = self.store.read(rel)
            if data is None:
                continue
            try:
                config = config_file.parse(data.decode())
            except Exception as exc:  # a config Triton could not read either: the publish replaces it
                raise FleetError(f"{self.url}: {rel} does not parse ({exc}); nothing more published") from None
            policy = version_policy(config)
            served = policy.served(before_versions)
            if served and policy.served(after_versions) != served:
                pins[rel] = with_version_policy(config, VersionPolicy("specific", versions=tuple(served)))
        if pins:
            index.pinned = sorted(set(index.pinned) | set(pins))
            self.put_index(index)
        for rel, pinned in pins.items():
            self.store.put_bytes(rel, config_file.render(pinned).encode())
            self.pinned.append(rel)
            self.on_step("pin", rel)

    # ---- the publish -------------------------------------------------------------------
    def run(self) -> PublishReport:
        files = local_files(self.repo)
        local = {rel: sha256_file(path) for rel, path in files.items()}
        index, first, strays = self.owned_index()
        remote = dict(index.files)
        if self.versions_as_published:
            local.update({rel: sha for rel, sha in remote.items() if part_of(rel).kind == "version"})
        self.refuse_rewrites(local, remote)
        kept = self.kept_versions(local, remote)

        def kind(rel):
            return part_of(rel).kind

        new_versions = sorted(rel for rel in local if kind(rel) == "version" and rel not in remote
                              and part_of(rel).version in kept[part_of(rel).model])
        model_files = sorted(rel for rel in local if kind(rel) in ("model", "other") and local[rel] != remote.get(rel))
        configs = {rel for rel in local if kind(rel) == "config" and (local[rel] != remote.get(rel) or rel in index.pinned)}
        manifest = [MANIFEST_FILE] if local.get(MANIFEST_FILE) != remote.get(MANIFEST_FILE) else []
        gone_models = models_of(remote) - models_of(local)
        gone_configs = sorted(rel for rel in remote if kind(rel) == "config" and rel not in local)
        retired = sorted(rel for rel in remote if kind(rel) == "version" and part_of(rel).model in kept
                         and part_of(rel).version not in kept[part_of(rel).model])
        gone = sorted(rel for rel in remote if rel not in local and kind(rel) != "config" and rel not in retired)
        leftovers = sorted(strays - set(local))
        unchanged = sum(1 for rel in local if remote.get(rel) == local[rel])
        if not (new_versions or model_files or configs or manifest or gone_configs or retired or gone or leftovers):
            return PublishReport(str(self.url), (), (), (), unchanged, 0)

        if first:
            self.put_index(index)  # the marker goes first: the prefix is ours from now on
        for model in sorted({part_of(rel).model for rel in new_versions}):
            self.pin(model, {part_of(rel).version for rel in new_versions if part_of(rel).model == model}, remote, index)
        # Ensembles last: a reader loads an ensemble's steps and models before it.
        ensembles = {m for m in models_of(local) if self._is_ensemble(m)}
        ordered = sorted(configs | {rel for rel in self.pinned if rel in local},
                         key=lambda rel: (part_of(rel).model in ensembles, config_order(rel)))
        uploads = [*new_versions, *model_files, *ordered, *manifest]
        self.progress = self.progress or Silent(0, 0)
        self.progress.files = len(uploads)
        self.progress.total_bytes = sum(files[rel].stat().st_size for rel in uploads)
        self.upload(new_versions, local, files, index)
        self.upload(model_files, local, files, index)
        index.pinned = [rel for rel in index.pinned if rel not in ordered]  # written with the configs' index
        self.upload(ordered, local, files, index)
        self.remove([rel for rel in gone_configs if part_of(rel).model in gone_models], index)
        self.remove([*retired, *gone, *(r for r in gone_configs if part_of(r).model not in gone_models)], index)
        if leftovers:
            self.store.delete(leftovers)
            self.deleted.extend(leftovers)
        self.upload(manifest, local, files, index)
        index.stamp()
        self.put_index(index)
        return PublishReport(str(self.url), tuple(self.uploaded), tuple(self.deleted), tuple(self.pinned), unchanged, self.bytes)

    def _is_ensemble(self, model: str) -> bool:
        try:
            return config_file.read(self.repo / model / CONFIG_FILE).platform == "ensemble"
        except (config_file.ConfigError, OSError):
            return False
