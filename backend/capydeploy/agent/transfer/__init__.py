"""Upload sessions, staging, resume, atomic install and manifests of the Agent (D6)."""

from .filesystem import FileWriter, OsFileWriter
from .service import InstalledGame, TransferService, UploadProgressInfo

__all__ = ["FileWriter", "InstalledGame", "OsFileWriter", "TransferService", "UploadProgressInfo"]
