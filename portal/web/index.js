// The landing page: only texts and the language switcher.
import { bindSwitcher, chooseLanguage, setLanguage } from "/static/i18n.js";

await setLanguage(chooseLanguage());
bindSwitcher();
document.body.dataset.ready = "true";
