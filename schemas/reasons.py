"""The one closed set of reason codes used by every rejection in lienthong.

Every error a user sees carries a :class:`Reason`: a stable name, a stable numeric code,
a message in Vietnamese and in English, and where one exists the code that the current
axis's provincial hubs use for the same failure (10 invalid file, 18 recipient does not
exist, 19 sender not registered, 21 processing error, 22 not conformant edXML,
23 recipient locked).

Numeric codes are grouped by the stage that rejects:

====  =====================================================
1xxx  the file itself: size, XML safety, edXML structure
2xxx  the directory and authorisation: agencies, gateways
3xxx  the ledger: duplicates, status lifecycle, business flows;
      3100-3109 the message's AMQP envelope (type, unreadable properties)
4xxx  signatures and certificates
5xxx  delivery: undeliverable, parked, processing errors
6xxx  running the hub: operations (ops API, CLI), settings, processes
7xxx  doors and reports: the current axis's HTTP API (7000-7049), national statistics (7050-7069),
      the gateway SDK in the gateway's own process (7070-7089: sending, connecting, misuse),
      keeping the hub: backup, restore, archive (7130-7149), large packages: chunked
      upload, claim check and fetch (7150-7169), gateways' requests that change the hub
      (7180-7199), running on a cluster (7200-7209)
====  =====================================================

Numeric codes are never reused or renumbered: a removed reason's code stays in
:data:`RETIRED_CODES`. Reasons that nothing raises yet are listed, with why they are kept,
in :data:`RESERVED`. Warnings (:class:`WarningCode`) are a
separate set: a warning never stops a package.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "RESERVED",
    "RETIRED_CODES",
    "LienthongError",
    "OperationRefused",
    "PackageRejected",
    "Reason",
    "ValidationWarning",
    "WarningCode",
]


@dataclass(frozen=True, slots=True)
class _ReasonInfo:
    code: int
    message_vi: str
    message_en: str
    axis_code: int | None = None
    final: bool = True


class Reason(Enum):
    """Why a package, a status or an operation was refused. Closed set."""

    # 1xxx the file itself
    EMPTY_PACKAGE = _ReasonInfo(1001, "Gói tin rỗng", "The package is empty", 10)
    PACKAGE_TOO_LARGE = _ReasonInfo(
        1002, "Gói tin vượt quá kích thước cho phép", "The package exceeds the size limit", 10
    )
    MALFORMED_XML = _ReasonInfo(
        1003, "Tệp không phải XML hợp lệ", "The file is not well-formed XML", 10
    )
    FORBIDDEN_XML_CONSTRUCT = _ReasonInfo(
        1004,
        "Gói tin chứa DTD, thực thể hoặc tham chiếu ngoài bị cấm",
        "The package contains a DTD, an entity or an external reference, which are forbidden",
        22,
    )
    XML_TOO_COMPLEX = _ReasonInfo(
        1005,
        "Cấu trúc XML quá sâu hoặc quá phức tạp",
        "The XML structure is too deep or too complex",
        22,
    )
    NOT_EDXML = _ReasonInfo(
        1006,
        "Gói tin không tuân thủ chuẩn edXML (QCVN 102:2016)",
        "The package does not conform to edXML (QCVN 102:2016)",
        22,
    )
    MISSING_SENDER = _ReasonInfo(
        1010,
        "Thiếu mã định danh cơ quan gửi (From/OrganId)",
        "The sender agency code (From/OrganId) is missing",
        22,
    )
    MISSING_SENDER_NAME = _ReasonInfo(
        1011,
        "Thiếu tên cơ quan gửi (From/OrganName)",
        "The sender agency name (From/OrganName) is missing",
        22,
    )
    NO_RECIPIENT = _ReasonInfo(
        1012, "Gói tin không có cơ quan nhận (To)", "The package names no recipient (To)", 22
    )
    DUPLICATE_RECIPIENT = _ReasonInfo(
        1013,
        "Một cơ quan nhận xuất hiện nhiều lần trong To",
        "The same recipient agency appears more than once in To",
        22,
    )
    MISSING_CODE = _ReasonInfo(
        1014,
        "Thiếu số, ký hiệu văn bản (Code)",
        "The document number and notation (Code) are missing",
        22,
    )
    BAD_DATE = _ReasonInfo(
        1015,
        "Ngày tháng không đọc được (định dạng yyyy/MM/dd)",
        "A date cannot be read (expected yyyy/MM/dd)",
        22,
    )
    DATE_IN_FUTURE = _ReasonInfo(
        1016, "Ngày ban hành ở tương lai", "The promulgation date is in the future", 22
    )
    UNKNOWN_BUSINESS_TYPE = _ReasonInfo(
        1017,
        "Loại nghiệp vụ (BussinessDocType) không hợp lệ",
        "Unknown business type (BussinessDocType)",
        22,
    )
    UNKNOWN_STATUS_CODE = _ReasonInfo(
        1018, "Mã trạng thái (StatusCode) không hợp lệ", "Unknown status code (StatusCode)", 22
    )
    ATTACHMENT_MISSING = _ReasonInfo(
        1019,
        "Thiếu tệp đính kèm được khai báo trong danh mục",
        "An attachment declared in the manifest is missing",
        22,
    )
    ATTACHMENT_UNDECLARED = _ReasonInfo(
        1020,
        "Tệp đính kèm không được khai báo trong danh mục",
        "An attachment is not declared in the manifest",
        22,
    )
    ATTACHMENT_BAD_ENCODING = _ReasonInfo(
        1021,
        "Dữ liệu tệp đính kèm không phải base64 hợp lệ",
        "Attachment data is not valid base64",
        22,
    )
    ATTACHMENT_BAD_ZIP = _ReasonInfo(
        1022,
        "Tệp đính kèm dạng ZIP bị hỏng",
        "A ZIP-wrapped attachment is corrupt",
        22,
    )
    STATUS_MISSING_REFERENCE = _ReasonInfo(
        1023,
        "Gói trạng thái thiếu ResponseFor/OrganId hoặc ResponseFor/DocumentId",
        "The status package lacks ResponseFor/OrganId or ResponseFor/DocumentId",
        22,
    )
    BAD_AGENCY_CODE = _ReasonInfo(
        1024, "Mã định danh cơ quan không hợp lệ", "An agency code is not valid", 22
    )
    TOO_MANY_RECIPIENTS = _ReasonInfo(
        1025, "Gói tin có quá nhiều cơ quan nhận", "The package names too many recipients", 10
    )
    TOO_MANY_ATTACHMENTS = _ReasonInfo(
        1026, "Gói tin có quá nhiều tệp đính kèm", "The package has too many attachments", 10
    )
    DESCRIPTION_TOO_LONG = _ReasonInfo(
        1027,
        "Lý do/mô tả vượt quá 1.000 ký tự",
        "The reason or description exceeds 1,000 characters",
        22,
    )
    MISSING_TARGET_DOCUMENT = _ReasonInfo(
        1028,
        "Gói thu hồi/cập nhật/thay thế không chỉ ra văn bản bị tác động",
        "A revoke, update or replace package does not name the document it changes",
        22,
    )
    KIND_MISMATCH = _ReasonInfo(
        1029,
        "Loại gói tin khai báo không khớp với nội dung",
        "The declared package kind does not match its content",
        22,
    )
    # 1100-1109 the AMQP message around the file (its routing key, properties, headers)
    BAD_MESSAGE_PROPERTIES = _ReasonInfo(
        1100,
        "Khóa định tuyến, thuộc tính hoặc tiêu đề AMQP của thông điệp không hợp lệ "
        "(không phải UTF-8)",
        "The message's AMQP routing key, properties or headers are not valid (not UTF-8)",
        10,
    )
    # 2xxx directory and authorisation
    SENDER_NOT_REGISTERED = _ReasonInfo(
        2001,
        "Cơ quan gửi chưa được đăng ký trên trục",
        "The sender agency is not registered on the axis",
        19,
    )
    RECIPIENT_UNKNOWN = _ReasonInfo(
        2002, "Cơ quan nhận không tồn tại", "The recipient agency does not exist", 18
    )
    RECIPIENT_LOCKED = _ReasonInfo(
        2003, "Cơ quan nhận đang bị khóa", "The recipient agency is locked", 23
    )
    SENDER_NOT_SERVED = _ReasonInfo(
        2004,
        "Hệ thống kết nối không được phép gửi thay cơ quan này",
        "The gateway is not allowed to send on behalf of this agency",
        15,
    )
    GATEWAY_UNKNOWN = _ReasonInfo(
        2005,
        "Hệ thống kết nối không xác định",
        "The connected system (gateway) is unknown",
        15,
    )
    GATEWAY_SUSPENDED = _ReasonInfo(
        2006, "Hệ thống kết nối đang bị tạm ngừng", "The gateway is suspended", 15
    )
    RECIPIENT_NO_GATEWAY = _ReasonInfo(
        2007,
        "Cơ quan nhận chưa được gắn với hệ thống kết nối nào",
        "The recipient agency is not served by any gateway",
        18,
    )
    # 3xxx ledger and lifecycle
    DOCUMENT_ID_CONFLICT = _ReasonInfo(
        3001,
        "Mã văn bản (DocumentId) đã được dùng cho một nội dung khác",
        "The DocumentId was already used for different content",
    )
    DOCUMENT_UNKNOWN = _ReasonInfo(
        3002,
        "Không tìm thấy văn bản được tham chiếu",
        "The referenced document is not known to the axis",
    )
    STATUS_ISSUER_NOT_RECIPIENT = _ReasonInfo(
        3003,
        "Cơ quan gửi trạng thái không phải nơi nhận của văn bản",
        "The agency sending the status is not a recipient of the document",
    )
    ILLEGAL_TRANSITION = _ReasonInfo(
        3004,
        "Chuyển trạng thái không hợp lệ",
        "This status change is not allowed from the current state",
    )
    RECALL_ANSWER_WITHOUT_RECALL = _ReasonInfo(
        3005,
        "Trả lời yêu cầu lấy lại khi chưa có yêu cầu lấy lại",
        "An answer to a recall was sent but no recall was requested",
    )
    TARGET_NOT_SAME_SENDER = _ReasonInfo(
        3006,
        "Văn bản bị tác động không thuộc cùng cơ quan gửi",
        "The document to revoke, update or replace belongs to another sender",
    )
    STATUS_WRONG_ADDRESSEE = _ReasonInfo(
        3007,
        "ResponseFor/OrganId không phải cơ quan gửi văn bản",
        "ResponseFor/OrganId is not the sender of the document",
    )
    # 3100-3109 the message's AMQP envelope (properties and headers)
    TYPE_MISSING = _ReasonInfo(
        3100,
        "Thiếu thuộc tính AMQP type (edoc hoặc status)",
        "The AMQP type property (edoc or status) is missing",
        22,
    )
    # 4xxx signatures
    SIGNATURE_REQUIRED = _ReasonInfo(
        4001, "Gói tin phải có chữ ký số", "The package must carry a digital signature"
    )
    SIGNATURE_INVALID = _ReasonInfo(4002, "Chữ ký số không hợp lệ", "The signature is not valid")
    SIGNATURE_WRAPPING = _ReasonInfo(
        4003,
        "Cấu trúc chữ ký bất thường (nghi tấn công bọc chữ ký)",
        "Unexpected signature structure (possible signature wrapping)",
    )
    CERTIFICATE_UNKNOWN = _ReasonInfo(
        4004,
        "Chứng thư số chưa được đăng ký cho hệ thống kết nối",
        "The certificate is not registered for this gateway",
    )
    CERTIFICATE_EXPIRED = _ReasonInfo(
        4005,
        "Chứng thư số hết hạn hoặc chưa có hiệu lực",
        "The certificate is expired or not yet valid",
    )
    CERTIFICATE_REVOKED = _ReasonInfo(
        4006, "Chứng thư số đã bị thu hồi", "The certificate has been revoked"
    )
    # 5xxx delivery
    UNDELIVERABLE = _ReasonInfo(
        5001,
        "Không chuyển được tới hàng đợi của hệ thống nhận",
        "The package could not be routed to the recipient gateway's queue",
        final=False,
    )
    # 5002 (NOT_CONSUMED) is retired: a copy not taken in time is a delivery state
    # (``not_arrived``), never a reason
    POISON = _ReasonInfo(
        5003,
        "Gói tin gây lỗi xử lý nhiều lần, đã chuyển vào khu cách ly",
        "The package failed processing repeatedly and was parked",
        21,
        final=False,
    )
    PROCESSING_ERROR = _ReasonInfo(
        5004, "Lỗi xử lý trên trục", "Processing error on the axis", 21, final=False
    )
    PARKED_DROPPED = _ReasonInfo(
        5005,
        "Gói tin trong khu cách ly đã bị hủy bởi người vận hành",
        "The parked package was dropped by an operator",
    )
    # 6xxx operations: an operator's request (ops API, CLI) that cannot be done
    OPS_BAD_PARAMETER = _ReasonInfo(
        6001, "Tham số truy vấn hoặc đường dẫn không hợp lệ",
        "A query or path parameter is not valid",
    )
    OPS_BAD_BODY = _ReasonInfo(
        6002, "Nội dung yêu cầu (JSON) không hợp lệ", "The request body (JSON) is not valid"
    )
    OPS_BAD_FILTER = _ReasonInfo(6003, "Bộ lọc không hợp lệ", "The filter is not valid")
    OPS_UNKNOWN_GATEWAY = _ReasonInfo(
        6004, "Không có hệ thống kết nối này", "No such gateway"
    )
    OPS_UNKNOWN_AGENCY = _ReasonInfo(
        6005, "Không có cơ quan với mã định danh này", "No agency has this code or alias"
    )
    OPS_JOB_NOT_FOUND = _ReasonInfo(
        6006, "Không có công việc gửi lại này", "No such re-delivery job"
    )
    OPS_DOCUMENT_NOT_FOUND = _ReasonInfo(
        6007, "Không tìm thấy văn bản", "No such document (hub id or edXML DocumentId)"
    )
    OPS_NOT_FOUND = _ReasonInfo(6008, "Không có đường dẫn này", "No such path")
    OPS_METHOD_NOT_ALLOWED = _ReasonInfo(
        6009, "Đường dẫn này không hỗ trợ phương thức đã dùng",
        "This path does not support the method used",
    )
    OPS_UNAUTHORIZED = _ReasonInfo(
        6010, "Thiếu hoặc sai mã truy cập (Authorization: Bearer <token>)",
        "Missing or invalid access token (Authorization: Bearer <token>)",
    )
    OPS_FORBIDDEN = _ReasonInfo(
        6011, "Chỉ người vận hành (operator) được thực hiện thao tác này",
        "Only an operator token may do this",
    )
    OPS_PREVIEW_MISMATCH = _ReasonInfo(
        6012, "Bộ lọc đã thay đổi so với lần xem trước: hãy xem trước lại rồi xác nhận",
        "The filter differs from the one previewed: preview again, then confirm",
    )
    OPS_UNAVAILABLE = _ReasonInfo(
        6013, "Không kết nối được PostgreSQL hoặc RabbitMQ, hãy thử lại",
        "PostgreSQL or RabbitMQ is unreachable, try again",
    )
    OPS_INTERNAL = _ReasonInfo(
        6014, "Lỗi nội bộ của dịch vụ vận hành", "Internal error of the ops service"
    )
    OPS_REDELIVERY_FAILED = _ReasonInfo(6015, "Gửi lại thất bại", "The re-delivery failed")
    OPS_WHY_REQUIRED = _ReasonInfo(
        6016, "Hãy ghi lý do (why): được lưu trong nhật ký kiểm toán",
        "Say why (why): it is kept in the audit log",
    )
    OPS_BODY_TOO_LARGE = _ReasonInfo(
        6017, "Nội dung yêu cầu quá lớn", "The request body is too large"
    )
    # 6030-6059 running the hub: settings and worker processes
    SETTING_INVALID = _ReasonInfo(
        6030,
        "Cấu hình (biến môi trường) không hợp lệ",
        "A setting (environment variable) is invalid",
    )
    WORKERS_CRASHING = _ReasonInfo(
        6031,
        "Tiến trình định tuyến bị lỗi liên tục, đã dừng khởi động lại",
        "Router workers kept crashing; the supervisor stopped restarting them",
    )
    # 7130-7149 backup, restore and archive of the ledger and the broker definitions
    BACKUP_TOOL_MISSING = _ReasonInfo(
        7130,
        "Không tìm thấy công cụ PostgreSQL (pg_dump / pg_restore) cần cho sao lưu, phục hồi",
        "A PostgreSQL tool (pg_dump / pg_restore) needed for backup or restore is missing",
    )
    BACKUP_FAILED = _ReasonInfo(
        7131, "Sao lưu thất bại; bản sao lưu dở dang đã bị xoá",
        "The backup failed; the partial backup was removed",
    )
    BACKUP_TARGET_EXISTS = _ReasonInfo(
        7132, "Thư mục sao lưu đã tồn tại và không rỗng",
        "The backup directory already exists and is not empty",
    )
    BACKUP_CORRUPT = _ReasonInfo(
        7133, "Bản sao lưu không đầy đủ hoặc bị thay đổi (sai mã băm SHA-256)",
        "The backup is incomplete or altered (SHA-256 mismatch)",
    )
    RESTORE_TARGET_NOT_EMPTY = _ReasonInfo(
        7134, "Cơ sở dữ liệu đích đã có sổ cái; không ghi đè khi phục hồi",
        "The target database already holds a ledger; a restore never overwrites it",
    )
    RESTORE_FAILED = _ReasonInfo(
        7135, "Phục hồi thất bại", "The restore failed",
    )
    ARCHIVED_BODY_UNREADABLE = _ReasonInfo(
        7136, "Không đọc được nội dung gói tin đã lưu trữ, hoặc tệp không khớp mã băm SHA-256",
        "An archived package body is missing or does not match its SHA-256",
    )
    ARCHIVE_SOURCE_ALTERED = _ReasonInfo(
        7137, "Nội dung gói tin trong sổ cái không khớp mã băm SHA-256; không lưu trữ",
        "A package body in the ledger does not match its SHA-256; it was not archived",
    )
    # 7150-7169 large packages: chunked upload, claim check, fetch (router.transfer)
    UPLOAD_BAD_REQUEST = _ReasonInfo(
        7150, "Yêu cầu truyền gói tin lớn không hợp lệ",
        "The large package transfer request is not valid",
    )
    UPLOAD_UNKNOWN = _ReasonInfo(
        7151, "Không có phiên tải lên này (chưa mở, đã hết hạn hoặc đã bị huỷ)",
        "No such upload (never opened, expired or discarded)",
    )
    UPLOAD_NOT_YOURS = _ReasonInfo(
        7152, "Phiên tải lên thuộc về cổng kết nối khác",
        "The upload belongs to another gateway",
    )
    CHUNK_HASH_MISMATCH = _ReasonInfo(
        7153, "Phần gói tin không khớp mã băm SHA-256 đã khai báo",
        "A chunk does not match its declared SHA-256",
    )
    CHUNK_OUT_OF_RANGE = _ReasonInfo(
        7154, "Số thứ tự hoặc kích thước của phần gói tin không đúng",
        "A chunk's sequence number or size is wrong for its upload",
    )
    CHUNK_CONFLICT = _ReasonInfo(
        7155, "Phần gói tin được gửi lại với nội dung khác",
        "A chunk was sent again with other content",
    )
    UPLOAD_INCOMPLETE = _ReasonInfo(
        7156, "Gói tin lớn được gửi đi khi còn thiếu phần",
        "The large package was submitted with chunks missing",
    )
    UPLOAD_HASH_MISMATCH = _ReasonInfo(
        7157, "Gói tin lớn không khớp kích thước hoặc mã băm SHA-256 đã khai báo",
        "The large package does not match its declared size or SHA-256",
    )
    UPLOAD_EXPIRED = _ReasonInfo(
        7158, "Phiên tải lên gói tin lớn đã hết hạn trước khi gửi xong; đã xoá phần đã nhận",
        "The large package upload expired before it was finished; its chunks were removed",
    )
    FETCH_REFUSED = _ReasonInfo(
        7159, "Cổng kết nối không được nhận gói tin lớn này",
        "This gateway may not fetch this large package",
    )
    FETCH_CORRUPT = _ReasonInfo(
        7160, "Gói tin lớn nhận về không khớp mã băm SHA-256; không giữ lại gì",
        "The fetched large package does not match its SHA-256; nothing was kept",
    )
    # 5100-5109: receipt replay
    REPLAY_BAD_REQUEST = _ReasonInfo(
        5101,
        "Yêu cầu phát lại biên nhận không hợp lệ",
        "The receipt replay request is not valid",
    )
    # 7090-7109: the published directory feed and the watch folder
    DIRECTORY_BAD_REQUEST = _ReasonInfo(
        7090,
        "Yêu cầu đồng bộ danh bạ cơ quan không hợp lệ",
        "The directory feed request is not valid",
    )
    WATCH_FILE_UNREADABLE = _ReasonInfo(
        7091,
        "Không đọc được tệp trong thư mục gửi (quá lớn hoặc không phải tệp thường)",
        "The file in the outbox folder cannot be read (too large or not a regular file)",
        10,
    )

    # 7000-7029 the VXP façade (adapters/vxp): the current axis's HTTP API
    VXP_UNSIGNED = _ReasonInfo(
        7000,
        "Yêu cầu thiếu tiêu đề xác thực XroadVnpt (systemid, sign-header, hash-header)",
        "The request lacks the XroadVnpt authentication headers "
        "(systemid, sign-header, hash-header)",
        15,
    )
    VXP_UNKNOWN_SYSTEM = _ReasonInfo(
        7001, "Hệ thống chưa được đăng ký", "The system is not registered", 15
    )
    VXP_BAD_SIGNATURE = _ReasonInfo(
        7002,
        "Chữ ký tiêu đề (hash-header) không đúng với khóa bí mật của hệ thống",
        "The header signature (hash-header) does not match the system's secret",
        15,
    )
    VXP_SIGN_HEADER_MISMATCH = _ReasonInfo(
        7003,
        "Tiêu đề được ký (sign-header) không khớp với tiêu đề thực gửi",
        "The signed headers (sign-header) do not match the headers actually sent",
        15,
    )
    VXP_STALE_TIMESTAMP = _ReasonInfo(
        7004,
        "Dấu thời gian quá cũ hoặc không hợp lệ (chế độ nghiêm ngặt)",
        "The timestamp is stale or invalid (strict mode)",
        15,
    )
    VXP_REPLAY = _ReasonInfo(
        7005,
        "Yêu cầu đã được gửi trước đó (phát lại, chế độ nghiêm ngặt)",
        "The request was already received (a replay, strict mode)",
        15,
    )
    VXP_HASH_MISMATCH = _ReasonInfo(
        7006,
        "Mã băm tệp (hash-file) thiếu hoặc không khớp với nội dung gửi",
        "The file hash (hash-file) is missing or does not match the body",
        10,
    )
    VXP_BAD_REQUEST = _ReasonInfo(
        7007,
        "Yêu cầu không đúng định dạng (tham số hoặc nội dung)",
        "The request is malformed (a parameter or the body)",
        10,
    )
    VXP_DOCUMENT_UNKNOWN = _ReasonInfo(
        7008,
        "Không có văn bản với docId này trong hộp thư của hệ thống",
        "No document with this docId is in the system's mailbox",
        21,
    )
    VXP_BAD_STATUS = _ReasonInfo(
        7009,
        "Trạng thái không hợp lệ (chỉ processing, done, fail)",
        "Invalid status (only processing, done, fail)",
        21,
    )
    VXP_UNKNOWN_OPERATION = _ReasonInfo(
        7010, "Thao tác không được hỗ trợ", "The operation is not supported", 21
    )
    VXP_HUB_TIMEOUT = _ReasonInfo(
        7012,
        "Trục không trả biên nhận kịp thời; gửi lại an toàn",
        "The axis did not answer with a receipt in time; sending again is safe",
        21,
        final=False,
    )
    VXP_GATEWAY_UNAVAILABLE = _ReasonInfo(
        7013,
        "Không kết nối được tới trục qua hệ thống kết nối (gateway) của hệ thống",
        "The system's gateway cannot reach the axis",
        21,
        final=False,
    )
    VXP_MESSAGE_TYPE_MISMATCH = _ReasonInfo(
        7014,
        "messagetype không khớp với loại gói tin (edoc/status)",
        "messagetype does not match the package kind (edoc/status)",
        22,
    )
    VXP_BUSY = _ReasonInfo(
        7016,
        "Cổng tương thích đang nhận quá nhiều dữ liệu; gửi lại sau",
        "The compatibility API is receiving too much at once; send again later",
        21,
        final=False,
    )
    # 7180-7199 gateways' requests that change the hub (router.requests)
    HUB_REQUEST_BAD = _ReasonInfo(
        7180,
        "Yêu cầu gửi tới trục không hợp lệ (thiếu trường, sai kiểu hoặc giá trị)",
        "The request to the hub is not valid (a field missing, of the wrong type or value)",
        21,
    )
    AGENCY_MANAGEMENT_NOT_ALLOWED = _ReasonInfo(
        7181,
        "Nhà vận hành trục chưa cho phép hệ thống kết nối này tự đăng ký hoặc xoá cơ quan",
        "The hub's operators have not allowed this gateway to register or delete agencies",
        21,
    )
    AGENCY_NOT_SERVED = _ReasonInfo(
        7182,
        "Mã cơ quan nằm ngoài phạm vi mà hệ thống kết nối được phép phục vụ",
        "The agency code is outside what this gateway may serve",
        21,
    )
    AGENCY_OF_ANOTHER_GATEWAY = _ReasonInfo(
        7183,
        "Cơ quan này do một hệ thống kết nối khác phục vụ",
        "The agency is served by another gateway",
        21,
    )
    GATEWAY_CHANGE_NOT_AUDITED = _ReasonInfo(
        7184,
        "Trục không ghi nhận được thay đổi vào nhật ký kiểm toán; không có gì bị thay đổi",
        "The hub did not record the change in its audit log; nothing was changed",
        21,
        final=False,
    )
    # 7050-7069 the national statistics
    BAD_REPORT_PERIOD = _ReasonInfo(
        7050,
        "Khoảng thời gian thống kê không hợp lệ (from, to theo ISO 8601, from trước to, "
        "tối đa 366 ngày)",
        "The report period is invalid (from and to in ISO 8601, from before to, at most "
        "366 days)",
    )
    BAD_REPORT_LEVEL = _ReasonInfo(
        7051,
        "Cấp thống kê (all, ministries, provinces), mã đơn vị hoặc định dạng (json, csv, "
        "xlsx) không hợp lệ",
        "The report level (all, ministries, provinces), unit code or format (json, csv, "
        "xlsx) is invalid",
    )
    # 7070-7089 the gateway SDK: what a gateway's own code did or must do
    RECEIPT_TIMEOUT = _ReasonInfo(
        7070,
        "Không nhận được biên nhận của trục trong thời hạn: gửi lại với cùng message_id",
        "No receipt from the hub in time: send again with the same message_id",
        final=False,
    )
    SDK_NOT_CONNECTED = _ReasonInfo(
        7071,
        "Chưa kết nối tới trục: gọi connect() (hoặc dùng async with) trước",
        "Not connected to the hub: call connect() (or use async with) first",
    )
    STATUS_NEEDS_DOCUMENT = _ReasonInfo(
        7072,
        "Gói tin trạng thái chỉ trả lời cho một văn bản (edoc), không cho gói trạng thái",
        "A status answers a document (edoc), not a status package",
    )
    SENDER_CODE_REQUIRED = _ReasonInfo(
        7073,
        "Gửi gói tin không kiểm tra trước thì phải cho biết mã cơ quan gửi (sender_code)",
        "A package sent without local validation needs its sender agency code (sender_code)",
    )
    PUBLISH_REFUSED = _ReasonInfo(
        7074,
        "RabbitMQ từ chối gói tin (không có quyền với khóa định tuyến hoặc user_id sai) và "
        "đóng kênh; kênh đã được mở lại",
        "RabbitMQ refused the message (no permission for the routing key, or a wrong "
        "user_id) and closed the channel; the channel was opened again",
    )
    # 7200-7209 running on a cluster
    PUBLISH_NACKED = _ReasonInfo(
        7200,
        "RabbitMQ không nhận gói tin (từ chối xác nhận: hàng đợi đang bầu lại nút dẫn sau khi "
        "một nút dừng, hoặc đã đầy); kênh đã được mở mới: hãy gửi lại với cùng message_id",
        "RabbitMQ did not take the message (a negative publisher confirm: its queue is "
        "electing a new leader after a node went away, or is full); a new channel was "
        "opened: send again with the same message_id",
    )

    # 7110-7129 gateway developers: the conformance check and the sandbox
    CONFORMANCE_GATEWAY_UNKNOWN = _ReasonInfo(
        7110,
        "Cổng kết nối cần kiểm tra không có hoặc không phục vụ cơ quan nào",
        "The gateway to check is unknown or serves no agency",
    )
    CONFORMANCE_FAILED = _ReasonInfo(
        7111,
        "Cổng kết nối không đạt bài kiểm tra tuân thủ",
        "The gateway failed the conformance check",
    )
    SANDBOX_NOT_RUNNING = _ReasonInfo(
        7112,
        "Môi trường thử nghiệm chưa được khởi động (lienthong sandbox up)",
        "The sandbox is not running (lienthong sandbox up)",
    )
    SANDBOX_FAULT_UNKNOWN = _ReasonInfo(
        7113,
        "Lỗi giả lập không hợp lệ trong môi trường thử nghiệm",
        "The sandbox fault is not valid",
    )

    @property
    def code(self) -> int:
        return self.value.code

    @property
    def message_vi(self) -> str:
        return self.value.message_vi

    @property
    def message_en(self) -> str:
        return self.value.message_en

    @property
    def axis_code(self) -> int | None:
        """The code the current axis's hubs use for this failure, if any."""
        return self.value.axis_code

    @property
    def final(self) -> bool:
        """A final reason is never retried: re-sending the same bytes fails the same way."""
        return self.value.final

    @classmethod
    def from_code(cls, code: int) -> Reason:
        for reason in cls:
            if reason.code == code:
                return reason
        raise KeyError(code)

    def as_dict(self, detail: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reason": self.name,
            "code": self.code,
            "message_vi": self.message_vi,
            "message_en": self.message_en,
        }
        if self.axis_code is not None:
            out["axis_code"] = self.axis_code
        if detail:
            out["detail"] = detail
        return out


class WarningCode(Enum):
    """Things worth telling the sender that do not stop a package."""

    DATE_DAY_FIRST = ("Ngày viết theo dạng dd/MM/yyyy", "A date was written as dd/MM/yyyy")
    PLACEHOLDER_SIGNATURE = (
        "Chữ ký mẫu của SDK (không phải chữ ký số) được coi như không có",
        "The SDK's placeholder Signature is not a real signature and is ignored",
    )
    DOCUMENT_ID_NONSTANDARD = (
        "DocumentId không theo dạng <mã cơ quan>,<ngày>,<số>/<ký hiệu>",
        "DocumentId does not follow <agency>,<date>,<number>/<notation>",
    )
    DOCUMENT_ID_SENDER_MISMATCH = (
        "Mã cơ quan trong DocumentId khác From/OrganId",
        "The agency code inside DocumentId differs from From/OrganId",
    )
    DUPLICATE_RECIPIENT_ALIAS = (
        "Một cơ quan nhận được ghi bằng nhiều mã (mã cũ và mã mới); chỉ gửi một bản",
        "One recipient is named by several codes (old and new); one copy is delivered",
    )
    TRACE_HEADER_WITHOUT_ORGAN = (
        "TraceHeader không có OrganId",
        "A TraceHeader has no OrganId",
    )
    EMPTY_OPTIONAL_FIELD = ("Trường tùy chọn để trống", "An optional field is empty")
    NONSTANDARD_AGENCY_CODE = (
        "Mã định danh cơ quan không theo dạng chuẩn",
        "An agency code does not follow a known form",
    )
    CERTIFICATE_EXPIRING_SOON = (
        "Chứng thư số dùng để ký gói tin sắp hết hạn: hãy đăng ký chứng thư mới",
        "The certificate that signed the package expires soon: register a new one",
    )
    LARGE_SIGNATURE_NOT_VERIFIED = (
        "Gói tin lớn có chữ ký số nhưng trục chưa kiểm tra chữ ký của gói tin lớn; "
        "bên nhận cần tự kiểm tra",
        "The large package is signed, but the hub does not verify the signatures of large "
        "packages yet; the recipient must verify it",
    )

    @property
    def message_vi(self) -> str:
        return self.value[0]

    @property
    def message_en(self) -> str:
        return self.value[1]


@dataclass(frozen=True, slots=True)
class ValidationWarning:
    """A warning about one place in a package."""

    code: WarningCode
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "warning": self.code.name,
            "message_vi": self.code.message_vi,
            "message_en": self.code.message_en,
            "detail": self.detail,
        }


class LienthongError(Exception):
    """Base of every error lienthong raises on purpose. Always carries a :class:`Reason`."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        text = f"{reason.name} ({reason.code}): {reason.message_en}"
        super().__init__(f"{text}: {detail}" if detail else text)

    def as_dict(self) -> dict[str, Any]:
        return self.reason.as_dict(self.detail or None)


class OperationRefused(LienthongError, ValueError):
    """What an operator asked for cannot be done (bad filter, unknown gateway, no such job).

    A ``ValueError`` too, so callers that refuse bad input the plain way still do.
    """


class PackageRejected(LienthongError):
    """The package is refused: it is not valid edXML for lienthong's profile.

    ``warnings`` holds what the parser noticed before it refused.
    """

    def __init__(
        self,
        reason: Reason,
        detail: str = "",
        *,
        warnings: tuple[ValidationWarning, ...] = (),
    ) -> None:
        super().__init__(reason, detail)
        self.warnings = warnings


# Codes once used and removed: never given to another reason.
RETIRED_CODES: dict[int, str] = {5002: "NOT_CONSUMED", 7011: "VXP_NOT_ALLOWED",
                                 7015: "VXP_NOT_YET_AVAILABLE"}

# Reasons nothing raises yet, kept on purpose (a test checks that every other reason is
# raised somewhere).
RESERVED: dict[Reason, str] = {
    Reason.PARKED_DROPPED: "for telling a sender that an operator dropped its parked "
    "package (`lienthong parking drop`)",
}

# Guard: the numeric codes are unique and never reuse a retired one (a test also checks this).
_codes: dict[int, str] = dict(RETIRED_CODES)
for _r in Reason:
    if _r.code in _codes:
        raise RuntimeError(f"duplicate reason code {_r.code}: {_r.name} and {_codes[_r.code]}")
    _codes[_r.code] = _r.name
del _codes, _r
