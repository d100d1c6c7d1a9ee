// The "Connect a phone" page: a copy button per field, report times in local time.

import { wireCopyButtons } from "./copy.js";
import { startTimes } from "./times.js";

wireCopyButtons();
startTimes();
