"""Typed application state."""

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.service import Archives, Selections
from satchel.config import Settings
from satchel.cors import Cors
from satchel.files.service import FileStore
from satchel.http.checks import CheckCache
from satchel.http.drain import Drain
from satchel.metrics import Tallies
from satchel.peers import Network
from satchel.shares.service import Shares
from satchel.throttle import Throttle
from satchel.tus.service import TusStore

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
ARCHIVES = web.AppKey("archives", Archives)
SELECTIONS = web.AppKey("selections", Selections)
SHARES = web.AppKey("shares", Shares)
SHARE_HTML = web.AppKey("share_html", str)  # a template: see http.shares
SHARE_JS = web.AppKey("share_js", bytes)
INDEX_HTML = web.AppKey("index_html", bytes)
DELETE_HTML = web.AppKey("delete_html", str)  # a template: see files.delete_page
OPENAPI_JSON = web.AppKey("openapi_json", bytes)
PAGE_JS = web.AppKey("page_js", bytes)
FILESTORE = web.AppKey("filestore", FileStore)
CHECKS = web.AppKey("checks", CheckCache)
UPLOAD_TOKENS = web.AppKey("upload_tokens", frozenset)
THROTTLE = web.AppKey("throttle", Throttle)
TUSSTORE = web.AppKey("tusstore", TusStore)
DRAIN = web.AppKey("drain", Drain)
TALLIES = web.AppKey("tallies", Tallies)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])
LINK_SECRETS = web.AppKey("link_secrets", tuple[bytes, ...])  # the first signs, all verify
CLIENT = web.RequestKey("client", str)
CORS = web.AppKey("cors", Cors)  # set only with --cors-origin
