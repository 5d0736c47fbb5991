/**
 * OHIF 3.13 configuration for radvlsm annotation teams (served by monailabel_app/lib/ohif_site.py).
 *
 * One DICOMweb data source on the same origin: the site proxies /dicom-web/ to the PACS
 * (Orthanc: http://pacs:8042/dicom-web), so the browser needs no CORS and no PACS credentials.
 * Automatic results are stored in the PACS as DICOM SEG (pre-annotation); the segmentation mode
 * opens them as editable stack labelmaps over the 2D ultrasound image and stores the corrected SEG
 * back through STOW-RS (the same data source).
 */
window.config = {
  name: 'radvlsm',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'pacs',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacs',
      configuration: {
        friendlyName: 'PACS (DICOMweb, proxied)',
        name: 'pacs',
        wadoUriRoot: '/dicom-web',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        supportsReject: false,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
